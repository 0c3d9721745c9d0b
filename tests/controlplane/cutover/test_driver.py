"""`dualstack cutover`: preflight, the move, and the way back, on the real stack.

The end-to-end test is the issue's proof: steady create / notify / status traffic for one tenant
through the real router, while the tenant is cut over from the v1 stand-in (its PostgreSQL
generation, the one production runs and the one with a status route) to the real v2
(PostgreSQL) and back, with the real migration, the real routing-file edit and the routers' own
confirmation. The test plays the funnel (creates, polls) and Midtrans (signed notifications,
retried on any non-2xx as Midtrans does).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psycopg
import pytest

from controlplane.cli import run
from controlplane.cutover import Cutover, CutoverStopped
from controlplane.errors import ExitStatus, Interrupted, UsageProblem
from controlplane.invocation import command_path
from controlplane.reverse.run import reverse_pass
from controlplane.reverse.v1_stores import writer_for
from tests.fixtures.cutover_world import World, v1_holds_an_order


@dataclass
class Traffic:
    """The funnel and Midtrans, for one tenant, through the router."""

    world: World
    failures: list[str] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)  # order id -> backend that created it
    paid_seen: set[str] = field(default_factory=set)
    regressions: list[str] = field(default_factory=list)
    notification_answers: Counter[int] = field(default_factory=Counter)
    served_by: Counter[str] = field(default_factory=Counter)
    ids: itertools.count[int] = field(default_factory=itertools.count)

    async def call(self, session: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> tuple[int, Any,
                                                                                                        str]:
        headers = {"Host": f"{self.world.tenant.slug}.agentbar.ai"}
        async with session.request(method, f"{self.world.router.url}{path}", headers=headers, **kwargs) as response:
            text = await response.text()
            return response.status, text, response.headers.get("X-Dualstack-Backend", "")

    async def read_status(self, session: aiohttp.ClientSession, order_id: str) -> str | None:
        status, text, backend = await self.call(session, "GET", f"/orders/{order_id}/status")
        self.served_by[f"status:{backend}"] += 1
        if status != 200:
            self.failures.append(f"GET status {order_id}: {status} {text[:120]}")
            return None
        # v1 spells it `paid` (so the real funnel never confirms on v1: v1's flaw, which the cutover
        # cures); the same state is what must never regress across the flips.
        value = str(json.loads(text)["order"]["status"]).upper()
        if order_id in self.paid_seen and value != "PAID":
            self.regressions.append(f"{order_id}: {value} after PAID")
        if value == "PAID":
            self.paid_seen.add(order_id)
        return value

    async def notify(self, session: aiohttp.ClientSession, order_id: str, amount: int) -> None:
        # The buyer pays: Midtrans settles the transaction (v2's Get Status then confirms it) and notifies.
        midtrans = self.world.stack.midtrans
        transaction = midtrans.set_status(order_id, "settlement", server_key=self.world.tenant.server_key)
        assert transaction.gross_amount == amount
        payload = midtrans.notification(transaction, "settlement")
        for _ in range(100):  # Midtrans retries any non-2xx (minutes apart; compressed here)
            status, _, _ = await self.call(session, "POST", "/webhooks/midtrans", json=payload)
            self.notification_answers[status] += 1
            if 200 <= status < 300:
                return
            await asyncio.sleep(0.1)
        self.failures.append(f"notification for {order_id} never acknowledged")

    async def customer(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                order_id = f"CO{next(self.ids):05d}"
                amount = 150000 + len(self.created)
                body = {"orderId": order_id, "amount": amount, "email": "budi@example.com", "phone": "0812",
                        "name": "Budi", "paymentMethod": "bca"}
                status, text, backend = await self.call(session, "POST", "/payment/create", json=body)
                if status != 200 or json.loads(text).get("success") is not True:
                    self.failures.append(f"create {order_id}: {status} {text[:120]}")
                    continue
                self.created[order_id] = backend
                await self.read_status(session, order_id)
                await self.notify(session, order_id, amount)
                for _ in range(50):
                    if await self.read_status(session, order_id) == "PAID":
                        break
                    await asyncio.sleep(0.05)
                else:
                    self.failures.append(f"{order_id} never read PAID after its notification")


async def test_cutover_to_v2_and_back_under_steady_traffic_fails_no_request_and_loses_no_order(
    world_pg: World
) -> None:
    world = world_pg
    traffic = Traffic(world)
    stop = asyncio.Event()
    customers = [asyncio.create_task(traffic.customer(stop)) for _ in range(4)]
    said: list[str] = []
    try:
        await asyncio.sleep(1.0)
        assert await asyncio.to_thread(Cutover(world.request("v2"), say=said.append).run) is True
        await asyncio.sleep(1.5)
        assert await asyncio.to_thread(Cutover(world.request("v1"), say=said.append).run) is True
        await asyncio.sleep(1.0)
    finally:  # a cutover that stopped still ends the traffic and shows what it said
        stop.set()
        ended = await asyncio.gather(*customers, return_exceptions=True)
        print("\n".join(said))
    assert [e for e in ended if e is not None] == []

    router = world.router
    print(f"{len(traffic.created)} orders: created by {Counter(traffic.created.values())}; reads served by "
          f"{dict(traffic.served_by)}; notification answers {dict(traffic.notification_answers)}; reads of the "
          f"other backend's orders {router.sample('dualstack_order_fallbacks_total', tenant=world.tenant.slug, result='served'):g}; "
          f"notifications v2 did not know yet and v1 took "
          f"{router.sample('dualstack_webhook_copies_total', tenant=world.tenant.slug, backend='v1', result='answered'):g}")
    slug = world.tenant.slug
    holds = {outcome: router.sample("dualstack_write_holds_total", tenant=slug, outcome=outcome)
             for outcome in ("released", "expired")}
    held = router.sample("dualstack_held_requests_total", tenant=slug, outcome="released")
    waited = router.sample("dualstack_held_request_wait_seconds_sum")
    print(f"holds {holds}; held writes {held:g}, added latency {1000 * waited / max(held, 1):.1f} ms on average; "
          + "; ".join(line for line in said if line.startswith(("hold:", "release:"))))
    assert traffic.failures == [] and traffic.regressions == []
    # Both flips held the writes and were released by the cutover (none left to expire).
    assert holds == {"released": 2, "expired": 0}
    assert router.sample("dualstack_held_requests_total", tenant=slug, outcome="refused") == 0
    created_by = Counter(traffic.created.values())
    assert created_by["v1"] > 0 and created_by["v2"] > 0, created_by  # traffic really crossed both flips
    assert traffic.paid_seen == set(traffic.created)  # every order paid, as its customer saw

    slug = world.tenant.slug
    # The reverse sync's follower keeps running after the way back (`next:` says so): a notification
    # v1 ignored for an order it did not hold yet reaches it on the follower's next pass.
    await asyncio.to_thread(reverse_pass, writer_for(world.v1_store), world.stack.database.app_url, slug)
    # Every order is paid where it lives: v1's table (which also holds every order v2 took, written
    # back by the reverse sync), and v2 for every order v2 holds (its own, and v1's that the syncs
    # carried over). Nothing else ever appeared or vanished.
    on_v1 = world.v1_statuses()
    with psycopg.connect(world.stack.database.admin_url) as conn:
        on_v2 = dict(conn.execute(
            "SELECT o.order_id, o.payment_status FROM payments.orders o JOIN payments.tenants t ON t.id = o.tenant_id "
            "WHERE t.slug = %s", (slug,)).fetchall())
        applied = conn.execute(
            "SELECT e.order_id, count(*) FROM payments.payment_events e JOIN payments.tenants t ON t.id = e.tenant_id "
            "WHERE t.slug = %s AND e.dedupe_key IS NOT NULL GROUP BY e.order_id", (slug,)).fetchall()
        grace = conn.execute("SELECT unknown_order_retry_until FROM payments.tenants WHERE slug = %s",
                             (slug,)).fetchone()
        emails = conn.execute(
            "SELECT n.order_id, n.template, count(*) FROM payments.notification_outbox n JOIN payments.tenants t "
            "ON t.id = n.tenant_id WHERE t.slug = %s GROUP BY n.order_id, n.template", (slug,)).fetchall()
    assert grace == (None,)  # the hold made v2's grace window for unknown orders unnecessary: never opened
    assert set(traffic.created) <= set(on_v1)  # the way back lost nothing
    assert {o for o, b in traffic.created.items() if b == "v2"} <= set(on_v2)
    assert set(on_v1) | set(on_v2) == set(traffic.created)
    assert all(status == "paid" for status in on_v1.values()), on_v1
    assert all(status == "paid" for status in on_v2.values()), on_v2
    # Each notification was applied at most once per backend (retries and copies are duplicates),
    # and an order has at most one email of each kind.
    assert all(count == 1 for _, count in applied) and all(count == 1 for *_, count in emails)
    # v2 emails the orders it created, both emails, once each, across both flips; never v1's
    # orders (migrated: v1 sent their order email and applies their settlement copy itself).
    on_v2_created = {o for o, b in traffic.created.items() if b == "v2"}
    assert {(o, t) for o, t, _ in emails if o in on_v2_created} == {
        (o, t) for o in on_v2_created for t in ("order_created", "payment_confirmation")}

    def sent_by_v2() -> Counter[tuple[str, str]]:
        return Counter((str(m["Message-ID"]).split(".")[1], str(m["Message-ID"]).split(".")[0].lstrip("<"))
                       for m in world.stack.relay.received)

    # The outbox sends as rows are written; a send the loaded relay refused once is retried at the next
    # sweep (every 30 s in production; the tests drive it): drive it until every email went out.
    for _ in range(200):
        if sum(sent_by_v2().values()) >= 2 * len(on_v2_created):
            break
        await world.stack.sweep(world.tenant)
        await asyncio.sleep(0.1)
    assert set(sent_by_v2()) == {(o, t) for o, t, _ in emails if o in on_v2_created}
    assert set(sent_by_v2().values()) == {1}
    assert world.stack.midtrans.snap_calls == len(traffic.created)  # no create ran twice

    text = world.router.config_path.read_text()
    assert "# the routing file ops edit; the cutover keeps this comment" in text
    assert "backend: v1   # flipped by dualstack cutover" in text
    with psycopg.connect(world.state.admin_url) as conn:
        kinds = [r[0] for r in conn.execute(
            f"SELECT kind FROM {world.state.layout.schema}.rollout_events WHERE tenant = %s ORDER BY id", (slug,))]
    assert kinds == ["cutover_started", "cutover_done", "cutover_started", "cutover", "cutover_done"]


async def test_a_failed_check_stops_the_cutover_before_anything_changes(world: World,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with sqlite3.connect(world.orders_db) as v1:  # a row v2 cannot take: reported by id, never dropped
        v1.execute("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                   "VALUES ('BAD-1', 'X', 'not-an-email', '1', 1000, 'midtrans', 'pending')")
    before = world.router.config_path.read_text()
    said: list[str] = []
    with pytest.raises(CutoverStopped, match="preflight failed \\(migration\\); nothing was changed"):
        await asyncio.to_thread(Cutover(world.request("v2"), say=said.append).run)
    assert world.router.config_path.read_text() == before
    assert any("[FAIL] migration:" in line and "BAD-1 (invalid email" in line for line in said), said
    assert any("[ok  ] health:" in line for line in said) and any("[ok  ] tenant:" in line for line in said)

    with pytest.raises(UsageProblem, match="needs --reason"):
        Cutover(world.request("v2", overrides=["migration"]))
    reason = "BAD-1 is a test order; agreed with support"
    said.clear()
    assert await asyncio.to_thread(Cutover(world.request("v2", overrides=["migration"], reason=reason),
                                           say=said.append).run) is False  # moved; the syncs say BAD-1 stayed
    assert "[OVERRIDDEN] migration" in "\n".join(said)
    assert any(line.startswith("  bad row BAD-1") for line in said)
    with psycopg.connect(world.state.admin_url) as conn:
        detail = conn.execute(f"SELECT detail FROM {world.state.layout.schema}.rollout_events WHERE tenant = %s "
                              "AND kind = 'cutover_started'", (world.tenant.slug,)).fetchone()[0]
        phase = conn.execute(f"SELECT phase FROM {world.state.layout.schema}.rollouts WHERE tenant = %s",
                             (world.tenant.slug,)).fetchone()
    assert detail["reason"] == reason
    assert [c["override"] for c in detail["checks"] if c["name"] == "migration"] == [reason]
    assert phase == ("soaking",)
    capsys.readouterr()
    assert run(["rollout", "explain", world.tenant.slug, "--state-database-url", world.state.control_url,
                "--schema", world.state.layout.schema]) == ExitStatus.OK
    assert (f"cutover_started by test: v1 -> v2; preflight: health ok, tenant ok, migration OVERRIDDEN, shadow ok, "
            f"handover ok, nginx ok, hold ok; override reason: {reason}") in capsys.readouterr().out
    # Repeating it is harmless: it checks the steps after the flip and leaves the soak as it is.
    said.clear()
    # Nothing syncs after the flip (the writes were held around the final sync): the first run said BAD-1.
    assert await asyncio.to_thread(Cutover(world.request("v2", overrides=["migration"], reason=reason),
                                           say=said.append).run) is True
    assert "already declared on v2" in said[0]
    assert any(line.startswith("soak: already soaking since") for line in said), said


async def test_a_tenant_v2_cannot_serve_and_a_router_that_never_confirms(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    v1_holds_an_order(world)
    with psycopg.connect(world.stack.database.admin_url) as conn:
        conn.execute("UPDATE payments.tenants SET status = 'suspended' WHERE slug = %s", (world.tenant.slug,))
    config = str(world.router.config_path)
    assert run(["cutover", "nosuch", "--to", "v2", "--config", config]) == ExitStatus.USAGE
    assert "no tenant 'nosuch'" in capsys.readouterr().err
    cli = ["cutover", world.tenant.slug, "--to", "v2", "--config", config, "--no-nginx", "--preflight-only",
           "--admin-url", world.stack.database.admin_url, "--owner-role", world.stack.database.layout.owner_role]
    assert await asyncio.to_thread(run, cli) == ExitStatus.INVALID
    out = capsys.readouterr().out
    assert "[FAIL] tenant: tenant '" in out and "is suspended in v2" in out
    assert "[FAIL] migration: cannot verify v1's orders in v2: pass --from (v1's store) and --database-url" in out
    said: list[str] = []
    with pytest.raises(CutoverStopped, match="tenant"):
        await asyncio.to_thread(Cutover(world.request("v2"), say=said.append).run)
    assert any("[FAIL] tenant:" in line and "suspended" in line for line in said), said
    with psycopg.connect(world.stack.database.admin_url) as conn:
        conn.execute("UPDATE payments.tenants SET status = 'active' WHERE slug = %s", (world.tenant.slug,))
    text = world.router.config_path.read_text()
    world.router.config_path.write_text(text.replace("backend: v1   #", "via: direct\n    backend: v1   #"))
    said.clear()
    with pytest.raises(CutoverStopped, match="handover"):
        await asyncio.to_thread(Cutover(world.request("v2"), say=said.append).run)
    assert any("[FAIL] handover: nginx sends" in line and "(via: direct)" in line for line in said), said
    world.router.config_path.write_text(text)
    lost = world.request("v2", router_admin_urls=["http://127.0.0.1:9/"])
    text = world.router.config_path.read_text().replace("router_wait_s: 10", "router_wait_s: 0.5")
    world.router.config_path.write_text(text)
    with pytest.raises(CutoverStopped, match=r"not every router served .* within 0.5 s \(http://127.0.0.1:9/: "
                       r"connection refused"):
        await asyncio.to_thread(Cutover(lost, say=said.append).run)
    assert "backend: v2" in world.router.config_path.read_text()  # the flip stands
    assert "routers: http://127.0.0.1:9/: connection refused (nothing listens there); waiting (up to 0.5 s)" in said
    # Run again with the routers that do answer: it finishes what the first run left undone.
    said.clear()
    assert await asyncio.to_thread(Cutover(world.request("v2"), say=said.append).run) is True
    assert any(line.startswith("routers: ") and "serves" in line for line in said), said
    assert any(line.startswith("release: no hold of ") for line in said) and any(
        line.startswith("soak: started") for line in said), said
    # The next steps print the command as it runs here, and no nginx step when there is no nginx.
    assert f"  {command_path()} rollout explain {world.tenant.slug}   (the soak's decisions)" in said
    assert any(" nginx apply " in line for line in said) != world.request("v2").skip_nginx, said


async def test_ctrl_c_after_the_flip_says_it_is_flipped_and_how_to_finish(world: World) -> None:
    v1_holds_an_order(world)

    def interrupt_after(prefix: str) -> Callable[[str], None]:
        def say(line: str) -> None:
            if line.startswith(prefix):
                raise KeyboardInterrupt
        return say

    with pytest.raises(Interrupted, match=f"{world.tenant.slug} was not flipped: .* still declares it on v1"):
        await asyncio.to_thread(Cutover(world.request("v2"), say=interrupt_after("final sync")).run)
    with pytest.raises(Interrupted, match=f"{world.tenant.slug} is flipped to v2 in .*: run the same command to "
                       "finish them"):
        await asyncio.to_thread(Cutover(world.request("v2"), say=interrupt_after("flipped:")).run)
    said: list[str] = []
    assert await asyncio.to_thread(Cutover(world.request("v2"), say=said.append).run) is True
    assert any(line.endswith("checking the steps after the flip") for line in said), said


async def test_a_row_going_bad_after_the_preflight_stops_the_cutover_before_the_flip(world: World) -> None:
    v1_holds_an_order(world)
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        if "] hold:" in line:  # the last check has passed: v1 now takes a row v2 cannot hold
            with sqlite3.connect(world.orders_db) as v1:
                v1.execute("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                           "VALUES ('LATE-1', 'X', 'x@example.com', '1', -5, 'midtrans', 'pending')")

    before = world.router.config_path.read_text()
    with pytest.raises(CutoverStopped, match="the bulk sync found rows that did not migrate clean"):
        await asyncio.to_thread(Cutover(world.request("v2"), say=say).run)
    assert world.router.config_path.read_text() == before
    assert any(line.startswith("  bad row LATE-1: amount -5") for line in said), said


async def test_the_preflight_refuses_an_empty_v1_store(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    """v1's PostgreSQL generation leaves an empty orders.db next to it: 0 orders is no proof of a migration."""
    db = world.stack.database
    cli = ["cutover", world.tenant.slug, "--to", "v2", "--config", str(world.router.config_path), "--no-nginx",
           "--preflight-only", "--admin-url", db.admin_url, "--owner-role", db.layout.owner_role,
           "--database-url", db.app_url, "--state-database-url", world.state.control_url, "--state-schema",
           world.state.layout.schema]
    for spelling in (["--from", f"sqlite:{world.orders_db}"], ["--sqlite", str(world.orders_db)]):
        assert await asyncio.to_thread(run, [*cli, *spelling]) == ExitStatus.INVALID
        out = capsys.readouterr().out
        assert (f"[FAIL] migration: v1 store has 0 orders (sqlite:{world.orders_db}): is this the store v1 "
                "writes?") in out, out
    v1_holds_an_order(world)
    assert await asyncio.to_thread(run, [*cli, "--from", f"sqlite:{world.orders_db}"]) == ExitStatus.OK
    assert "[ok  ] migration: 1 v1 orders: 1 to insert" in capsys.readouterr().out

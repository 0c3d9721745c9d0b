"""`dualstack cutover`: preflight, the move, and the way back, on the real stack.

The end-to-end test is the issue's proof: steady create / notify / status traffic for one tenant
through the real router, while the tenant is cut over from the v1 stand-in (SQLite) to the real v2
(PostgreSQL) and back, with the real migration, the real routing-file edit and the routers' own
confirmation. The test plays the funnel (creates, polls) and Midtrans (signed notifications,
retried on any non-2xx as Midtrans does).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import sqlite3
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from controlplane.cli import run
from controlplane.cutover import Cutover, CutoverRequest, CutoverStopped
from controlplane.db.layout import DatabaseLayout
from controlplane.errors import ExitStatus, UsageProblem
from standins.legacy_v1 import LegacyV1, open_database
from standins.midtrans import signature
from tests.conftest import Database, Router, RouterFactory
from tests.proxy.v2.conftest import Stack, Tenant, stack  # noqa: F401  (the v2 + fake Midtrans fixture)


@dataclass
class World:
    stack: Stack
    tenant: Tenant
    router: Router
    orders_db: Path
    state: Database

    def request(self, to: str, **kwargs: Any) -> CutoverRequest:
        db = self.stack.database
        settings: dict[str, Any] = dict(
            config_path=self.router.config_path, slug=self.tenant.slug, to=to,
            admin_url=db.admin_url, database_url=db.app_url, sqlite=self.orders_db, state_url=self.state.app_url,
            layout=DatabaseLayout(schema="payments", owner_role=db.layout.owner_role, app_role=db.layout.app_role),
            state_schema=self.state.layout.schema,
            router_admin_urls=[str(self.router.admin.make_url("")).rstrip("/")],
            skip_nginx=shutil.which("nginx") is None, actor="test")
        return CutoverRequest(**{**settings, **kwargs})


@pytest.fixture
async def world(stack: Stack, state: Database, aiohttp_server: Any, make_router: RouterFactory,  # noqa: F811
                tmp_path: Path) -> World:
    tenant = stack.add_tenant()
    fake = str(stack.midtrans_server.make_url("")).rstrip("/")
    orders_db = tmp_path / "orders.db"
    v1 = await aiohttp_server(LegacyV1(open_database(orders_db), server_key=tenant.server_key,
                                       snap_url=f"{fake}/sandbox/snap/v1/transactions").app())
    router = await make_router(textwrap.dedent(f"""\
        # the routing file ops edit; the cutover keeps this comment
        upstreams:
          v1: {{url: "{str(v1.make_url("")).rstrip("/")}", tenants: [{tenant.slug}]}}
          v2: {{url: "{stack.url}"}}
        base_domain: agentbar.ai
        cutover: {{min_comparisons: 0, router_wait_s: 10}}
        tenants:
          {tenant.slug}:
            backend: v1   # flipped by dualstack cutover
        """), state_database_url=state.app_url)
    return World(stack, tenant, router, orders_db, state)


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
        value = str(json.loads(text)["order"]["status"])
        if order_id in self.paid_seen and value != "PAID":
            self.regressions.append(f"{order_id}: {value} after PAID")
        if value == "PAID":
            self.paid_seen.add(order_id)
        return value

    async def notify(self, session: aiohttp.ClientSession, order_id: str, amount: int) -> None:
        gross = f"{amount}.00"
        payload = {"transaction_time": "2026-11-27 10:00:00", "transaction_status": "settlement",
                   "transaction_id": f"tx-{order_id}", "status_message": "ok", "status_code": "200",
                   "signature_key": signature(order_id, "200", gross, self.world.tenant.server_key),
                   "payment_type": "bank_transfer", "order_id": order_id, "merchant_id": "G000000000",
                   "gross_amount": gross, "currency": "IDR", "settlement_time": "2026-11-27 10:00:05"}
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
    world: World
) -> None:
    traffic = Traffic(world)
    stop = asyncio.Event()
    customers = [asyncio.create_task(traffic.customer(stop)) for _ in range(4)]
    said: list[str] = []
    await asyncio.sleep(1.0)
    assert await asyncio.to_thread(Cutover(world.request("v2"), say=said.append).run) is True
    await asyncio.sleep(1.5)
    assert await asyncio.to_thread(Cutover(world.request("v1"), say=said.append).run) is True
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*customers)

    router = world.router
    print("\n".join(said))
    print(f"{len(traffic.created)} orders: created by {Counter(traffic.created.values())}; reads served by "
          f"{dict(traffic.served_by)}; notification answers {dict(traffic.notification_answers)}; reads of the "
          f"other backend's orders {router.sample('dualstack_order_fallbacks_total', tenant=world.tenant.slug, result='served'):g}; "
          f"notifications v2 did not know yet and v1 took "
          f"{router.sample('dualstack_webhook_copies_total', tenant=world.tenant.slug, backend='v1', result='answered'):g}")
    assert traffic.failures == [] and traffic.regressions == []
    created_by = Counter(traffic.created.values())
    assert created_by["v1"] > 0 and created_by["v2"] > 0, created_by  # traffic really crossed both flips
    assert traffic.paid_seen == set(traffic.created)  # every order paid, as its customer saw

    slug = world.tenant.slug
    # Every order is paid where it lives: v1's file, and v2 for every order v2 holds (its own, and
    # v1's that the syncs carried over). Nothing else ever appeared or vanished.
    with sqlite3.connect(f"file:{world.orders_db}?mode=ro", uri=True) as v1:
        on_v1 = dict(v1.execute("SELECT id, status FROM orders").fetchall())
    with psycopg.connect(world.stack.database.admin_url) as conn:
        on_v2 = dict(conn.execute(
            "SELECT o.order_id, o.payment_status FROM payments.orders o JOIN payments.tenants t ON t.id = o.tenant_id "
            "WHERE t.slug = %s", (slug,)).fetchall())
        applied = conn.execute(
            "SELECT e.order_id, count(*) FROM payments.payment_events e JOIN payments.tenants t ON t.id = e.tenant_id "
            "WHERE t.slug = %s AND e.dedupe_key IS NOT NULL GROUP BY e.order_id", (slug,)).fetchall()
        emails = conn.execute(
            "SELECT n.order_id, count(*) FROM payments.notification_outbox n JOIN payments.tenants t "
            "ON t.id = n.tenant_id WHERE t.slug = %s GROUP BY n.order_id", (slug,)).fetchall()
    assert {o for o, b in traffic.created.items() if b == "v1"} <= set(on_v1)
    assert {o for o, b in traffic.created.items() if b == "v2"} <= set(on_v2)
    assert set(on_v1) | set(on_v2) == set(traffic.created)
    assert all(status == "PAID" for status in on_v1.values()), on_v1
    assert all(status == "paid" for status in on_v2.values()), on_v2
    # Each notification was applied at most once per backend (retries and copies are duplicates),
    # and a paid order sends its confirmation email once.
    assert all(count == 1 for _, count in applied) and all(count == 1 for _, count in emails)
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
    assert run(["rollout", "explain", world.tenant.slug, "--state-database-url", world.state.app_url,
                "--schema", world.state.layout.schema]) == ExitStatus.OK
    assert (f"cutover_started by test: v1 -> v2; preflight: health ok, tenant ok, migration OVERRIDDEN, shadow ok, "
            f"handover ok, nginx ok; override reason: {reason}") in capsys.readouterr().out
    # Repeating it is harmless: it checks the steps after the flip and leaves the soak as it is.
    said.clear()
    assert await asyncio.to_thread(Cutover(world.request("v2", overrides=["migration"], reason=reason),
                                           say=said.append).run) is False  # BAD-1 is still not in v2
    assert "already declared on v2" in said[0]
    assert any(line.startswith("soak: already soaking since") for line in said), said


async def test_a_tenant_v2_cannot_serve_and_a_router_that_never_confirms(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
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
    assert "[FAIL] migration: cannot verify v1's orders in v2: pass --sqlite and --database-url" in out
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
    with pytest.raises(CutoverStopped, match=r"did not serve .* within 0.5 s"):
        await asyncio.to_thread(Cutover(lost, say=said.append).run)
    assert "backend: v2" in world.router.config_path.read_text()  # the flip stands
    # Run again with the routers that do answer: it finishes what the first run left undone.
    said.clear()
    assert await asyncio.to_thread(Cutover(world.request("v2"), say=said.append).run) is True
    assert any(line.startswith("routers: ") and "serves" in line for line in said), said
    assert any(line.startswith("catch-up sync 1:") for line in said) and any(line.startswith("soak: started")
                                                                              for line in said), said


async def test_a_row_going_bad_after_the_preflight_stops_the_cutover_before_the_flip(world: World) -> None:
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        if "] nginx:" in line:  # the last check has passed: v1 now takes a row v2 cannot hold
            with sqlite3.connect(world.orders_db) as v1:
                v1.execute("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                           "VALUES ('LATE-1', 'X', 'x@example.com', '1', -5, 'midtrans', 'pending')")

    before = world.router.config_path.read_text()
    with pytest.raises(CutoverStopped, match="the final sync found rows that did not migrate clean"):
        await asyncio.to_thread(Cutover(world.request("v2"), say=say).run)
    assert world.router.config_path.read_text() == before
    assert any(line.startswith("  bad row LATE-1: amount -5") for line in said), said

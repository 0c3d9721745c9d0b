"""The way back loses nothing even with v2 stopped: a tenant cut over to the real v2 (its own process),
orders created and paid on it through the router while `dualstack reverse-sync --follow` runs (its own
process too), then v2 KILLED (SIGKILL to its process group), and `cutover --to v1` completes without
it: every order created on v2 is in v1's store and readable through the v1 stand-in with its status.
Then `cutover complete` ends the reverse path and the follower stops. Both of v1's generations."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controlplane.cli import ExitStatus, run
from controlplane.cutover import Cutover
from controlplane.state.cutovers import CutoverStore
from controlplane.state.reverse_syncs import ReverseSyncStore
from proxy.router.notification_keys import DatabaseKeyStore
from standins.legacy_v1 import KEEPALIVE_TIMEOUT_S, LegacyV1, PostgresOrders, SqliteOrders, open_database
from standins.legacy_v1.admin import Admin
from standins.legacy_v1.stores import OrderStore
from tests.conftest import REPO, Database, RouterFactory, free_port, wait_until
from tests.fixtures.cutover_world import World
from tests.fixtures.v2_stack import Stack

ADMIN_PASSWORD = "v1-admin-pass"


class Process:
    """A child in a process group of its own (so a kill takes its workers too), its output in a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=env, cwd=REPO, start_new_session=True)

    def kill(self) -> None:
        if self.child.poll() is None:
            os.killpg(self.child.pid, signal.SIGKILL)
        self.child.wait(timeout=20)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


async def answering(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def wait_answering(url: str, process: Process) -> None:
    for _ in range(400):
        if await answering(url):
            return
        assert process.child.poll() is None, process.log.read_text()[-2000:]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never answered: {process.log.read_text()[-2000:]}")


async def v1_reads(v1_url: str, order_ids: list[str], postgresql: bool) -> dict[str, str]:
    """Each order's status as the v1 stand-in itself answers it: its status route (PostgreSQL
    generation) or its admin page's order list (the SQLite generation has no status route)."""
    async with aiohttp.ClientSession() as session:
        if postgresql:
            found = {}
            for order_id in order_ids:
                async with session.get(f"{v1_url}/orders/{order_id}/status") as response:
                    if response.status == 200:
                        found[order_id] = (await response.json(content_type=None))["order"]["status"]
            return found
        async with session.post(f"{v1_url}/admin/login", json={"username": "admin",
                                                                "password": ADMIN_PASSWORD}) as response:
            token = (await response.json(content_type=None))["token"]
        async with session.get(f"{v1_url}/admin/orders", headers={"Authorization": f"Bearer {token}"}) as response:
            orders = (await response.json(content_type=None))["orders"]
        return {o["id"]: o["status"] for o in orders if o["id"] in order_ids}


@pytest.mark.parametrize("generation", ["sqlite", "postgresql"])
async def test_the_way_back_completes_with_v2_killed_and_v1_holds_every_order_v2_took(
    generation: str, stack: Stack, state: Database, aiohttp_server: Any, make_router: RouterFactory,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: list[Process], request: pytest.FixtureRequest
) -> None:
    postgresql = generation == "postgresql"
    tenant = stack.add_tenant()
    fake = str(stack.midtrans_server.make_url("")).rstrip("/")
    monkeypatch.setenv("DUALSTACK_MIDTRANS_CORE_URL_SANDBOX", f"{fake}/sandbox")
    orders_db = tmp_path / "orders.db"
    v1_database_url: str | None = request.getfixturevalue("empty_database") if postgresql else None
    store: OrderStore = PostgresOrders(v1_database_url) if v1_database_url else SqliteOrders(open_database(orders_db))
    v1 = await aiohttp_server(LegacyV1(store, server_key=tenant.server_key, spelling="lower" if postgresql else "upper",
                                       snap_url=f"{fake}/sandbox/snap/v1/transactions",
                                       admin=Admin(store, password=ADMIN_PASSWORD)).app(),
                              keepalive_timeout=KEEPALIVE_TIMEOUT_S)
    v1_url = str(v1.make_url("")).rstrip("/")
    v2_port = free_port()
    health = "" if postgresql else ", health: {tcp: true}"
    router = await make_router(textwrap.dedent(f"""\
        upstreams:
          v1: {{url: "{v1_url}", tenants: [{tenant.slug}]{health}}}
          v2: {{url: "http://127.0.0.1:{v2_port}"}}
        base_domain: agentbar.ai
        cutover: {{min_comparisons: 0, router_wait_s: 10}}
        tenants:
          {tenant.slug}:
            backend: v1
        """), state_database_url=state.router_url,
        notification_keys=DatabaseKeyStore(stack.database.router_url, stack.database.layout.schema))
    world = World(stack, tenant, router, orders_db, state, v1_url, v1_database_url)
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    v2 = Process([sys.executable, "-m", "proxy.v2", "--listen", f"127.0.0.1:{v2_port}", "--log-level", "WARNING",
                  "--notification-url-template", f"{router.url}/webhooks/midtrans?tenant={{slug}}",
                  "--snap-url-sandbox", f"{fake}/sandbox/snap/v1/transactions", "--core-url-sandbox", f"{fake}/sandbox"],
                 dict(env, DUALSTACK_DATABASE_URL=stack.database.app_url), tmp_path / "v2.log")
    processes.append(v2)
    await wait_answering(f"http://127.0.0.1:{v2_port}/health?tenant={tenant.slug}", v2)
    async with aiohttp.ClientSession() as session, session.post(
            f"{v1_url}/payment/create", json={"orderId": "EARLIER-1", "amount": 50000, "email": "sari@example.com",
                                             "phone": "0812", "name": "Sari", "paymentMethod": "bca"}) as response:
        assert response.status == 200  # an order v1 took before the cutover

    said: list[str] = []
    assert await asyncio.to_thread(Cutover(world.request("v2"), say=said.append).run) is True, "\n".join(said)
    assert any(line.startswith("reverse sync: begun; first pass:") for line in said), said
    assert any("reverse-sync --from" in line and "--follow" in line for line in said), said  # next: the follower
    cutovers = CutoverStore(state.control_url, state.layout.schema)
    latest = cutovers.latest(tenant.slug)
    assert latest is not None and ("reverse_sync_started", "done") in [
        (e.step, e.status) for e in cutovers.entries(latest.id)]

    metrics = tmp_path / "reverse.prom"
    follower = Process([sys.executable, "-m", "controlplane", "reverse-sync", "--from", world.v1_store.name
                        if postgresql else f"sqlite:{orders_db}", "--tenant", tenant.slug, "--follow",
                        "--interval-s", "0.2", "--metrics-file", str(metrics)],
                       dict(env, DUALSTACK_DATABASE_URL=stack.database.app_url,
                            DUALSTACK_STATE_DATABASE_URL=state.control_url), tmp_path / "follower.log")
    processes.append(follower)

    created: list[str] = []
    async with aiohttp.ClientSession() as session:
        for n in range(6):
            order_id = f"ON-V2-{n}"
            async with session.post(f"{router.url}/payment/create", headers={"Host": f"{tenant.slug}.agentbar.ai"},
                                    json={"orderId": order_id, "amount": 120000 + n, "email": "budi@example.com",
                                          "phone": "0812", "name": "Budi", "paymentMethod": "bca"}) as response:
                assert response.status == 200 and response.headers["X-Dualstack-Backend"] == "v2"
            created.append(order_id)
    for order_id in created[:4]:
        assert [d["status"] for d in await stack.notify(order_id, transaction_status="settlement")] == [200]
    paid = "paid" if postgresql else "PAID"
    want = {**{o: paid for o in created[:4]}, **{o: paid.replace("paid", "pending").replace("PAID", "PENDING_PAYMENT")
                                                   for o in created[4:]}}

    def v1_holds_them() -> bool:
        return {o: s for o, s in world.v1_statuses().items() if o in want} == want

    # The follower copied them (the cutover's own pass came before they were created), and said so.
    await wait_until(lambda: v1_holds_them() and metrics.exists(), timeout_s=20)
    assert f'dualstack_reverse_sync_lag_seconds{{tenant="{tenant.slug}"}}' in metrics.read_text()

    v2.kill()  # v2 is gone: no graceful stop, no last word
    assert not await answering(f"http://127.0.0.1:{v2_port}/health")
    said.clear()
    back = await asyncio.to_thread(Cutover(world.request("v1"), say=said.append).run)
    print("\n".join(said))
    assert back is True, "\n".join(said)
    check = next(line for line in said if "reverse_sync:" in line)
    assert "[ok  ] reverse_sync: v1 holds all 7 orders v2 held" in check, check  # 6 created on v2 + v1's earlier one

    assert await v1_reads(v1_url, created, postgresql) == want  # through v1 itself
    if postgresql:  # and through the router, which now serves v1 (the SQLite generation has no status route)
        async with aiohttp.ClientSession() as session, session.get(
                f"{router.url}/orders/{created[0]}/status", headers={"Host": f"{tenant.slug}.agentbar.ai"}) as response:
            assert response.status == 200 and response.headers["X-Dualstack-Backend"] == "v1"
            assert (await response.json(content_type=None))["order"]["status"] == "paid"

    assert run(["cutover", "complete", tenant.slug, "--state-database-url", state.control_url]) == ExitStatus.OK
    await asyncio.to_thread(follower.child.wait, 20)  # it stops at its next pass
    assert follower.child.returncode == 0, follower.log.read_text()[-2000:]
    record = ReverseSyncStore(state.control_url, state.layout.schema).get(tenant.slug)
    assert record is not None and not record.running and record.rows_copied >= 6
    assert "dualstack_reverse_sync_running{tenant=" in metrics.read_text()
    assert f'dualstack_reverse_sync_running{{tenant="{tenant.slug}"}} 0.0' in metrics.read_text()

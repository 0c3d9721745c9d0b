"""Write holds at the router: a hold the control role writes in the state database holds the tenant's
writes (reads flow), is confirmed by the router, and ends when released (the writes go on in arrival
order, routed by the table of that moment) or on the router's own clock when nobody releases it."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from psycopg import errors

from controlplane.config import ConfigFile
from controlplane.config.model import CutoverPolicy
from controlplane.cutover import CutoverStopped
from controlplane.cutover.hold import take
from controlplane.cutover.request import CutoverRequest
from controlplane.state.holds import HoldStore
from proxy.router import holds as router_holds
from proxy.router.holds import WriteHolds
from proxy.router.metrics import ProxyMetrics
from proxy.router.state import RouterState
from tests.conftest import Database, Router, RouterFactory, Upstream, routing_yaml, wait_until


def tenant_slug() -> str:
    return "h" + secrets.token_hex(3)  # the state database is shared by the session's tests


async def call(session: aiohttp.ClientSession, router: Router, slug: str, method: str, path: str) -> tuple[int, Any]:
    async with session.request(method, f"{router.url}{path}", headers={"Host": f"{slug}.agentbar.ai"},
                               data=b"{}" if method == "POST" else None) as response:
        body = await response.json()
        return response.status, body if response.status != 200 else body["backend"]


def confirmed_by(state: Database, hold_id: int) -> int:
    with psycopg.connect(state.admin_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {state.layout.schema}.hold_confirmations WHERE hold_id = %s",
                           (hold_id,)).fetchone()
    return int(row[0]) if row else 0


async def test_a_hold_holds_writes_lets_reads_flow_and_releases_them_in_arrival_order_to_the_new_backend(
        upstreams: dict[str, Upstream], make_router: RouterFactory, state: Database) -> None:
    slug = tenant_slug()
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, f"{slug}: {{backend: v1}}\n")
    # Polls every 30 s: the router can only see the hold in time through its LISTEN connection.
    router = await make_router(yaml, state_database_url=state.router_url, lock_poll_s=30)
    store = HoldStore(state.control_url, state.layout.schema)
    await wait_until(lambda: len(store.alive_workers()) > 0, timeout_s=20)
    hold = await asyncio.to_thread(store.create, slug, 20.0, None)
    await wait_until(lambda: confirmed_by(state, hold.id) == 1, timeout_s=10)
    assert router.sample("dualstack_write_holds_active") == 1

    async with aiohttp.ClientSession() as session:
        writes = []
        for n in range(3):  # one after the other: each is waiting before the next arrives
            writes.append(asyncio.create_task(call(session, router, slug, "POST", f"/payment/create?n={n}")))
            await wait_until(lambda n=n: router.sample("dualstack_held_requests_waiting") == n + 1, timeout_s=10)
        assert await call(session, router, slug, "GET", "/orders/A/status") == (200, "v1")  # reads flow
        assert not any(w.done() for w in writes)
        router.config_path.write_text(yaml.replace("backend: v1", "backend: v2"))  # the flip
        assert await asyncio.to_thread(store.release, slug, "v2", hold.id) == [hold.id]
        assert await asyncio.gather(*writes) == [(200, "v2")] * 3
    posts = [seen.path_qs for seen in upstreams["v2"].seen if seen.method == "POST"]
    assert posts == [f"/payment/create?n={n}" for n in range(3)]  # in arrival order
    assert not any(seen.method == "POST" for seen in upstreams["v1"].seen)
    assert router.sample("dualstack_held_requests_total", tenant=slug, outcome="released") == 3
    assert router.sample("dualstack_write_holds_total", tenant=slug, outcome="released") == 1
    assert router.sample("dualstack_held_request_wait_seconds_count") == 3
    assert router.sample("dualstack_write_hold_duration_seconds_count") == 1
    assert router.sample("dualstack_write_holds_active") == 0


async def test_a_hold_nobody_releases_ends_on_the_routers_own_clock(
        upstreams: dict[str, Upstream], make_router: RouterFactory, state: Database) -> None:
    """The cutover died after writing the hold: the row stays open, and the tenant is not frozen."""
    slug = tenant_slug()
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, f"{slug}: {{backend: v1}}\n")
    router = await make_router(yaml, state_database_url=state.router_url)
    store = HoldStore(state.control_url, state.layout.schema)
    await wait_until(lambda: len(store.alive_workers()) > 0, timeout_s=20)
    hold = await asyncio.to_thread(store.create, slug, 1.0, None)
    await wait_until(lambda: confirmed_by(state, hold.id) == 1, timeout_s=10)
    async with aiohttp.ClientSession() as session:
        assert await call(session, router, slug, "POST", "/payment/create") == (200, "v1")
        # Expired here while the row is still open in the database: it is not taken up again.
        await asyncio.sleep(0.3)
        assert await call(session, router, slug, "POST", "/payment/create") == (200, "v1")
    assert router.sample("dualstack_write_holds_total", tenant=slug, outcome="expired") == 1
    assert router.sample("dualstack_held_requests_total", tenant=slug, outcome="released") == 1
    assert router.sample("dualstack_write_holds_active") == 0


async def test_a_hold_keeps_at_most_its_bound_of_writes_and_answers_the_rest_503(
        upstreams: dict[str, Upstream], make_router: RouterFactory, state: Database,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router_holds, "MAX_HELD_PER_TENANT", 2)
    slug = tenant_slug()
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, f"{slug}: {{backend: v1}}\n")
    router = await make_router(yaml, state_database_url=state.router_url)
    store = HoldStore(state.control_url, state.layout.schema)
    await wait_until(lambda: len(store.alive_workers()) > 0, timeout_s=20)
    hold = await asyncio.to_thread(store.create, slug, 20.0, None)
    await wait_until(lambda: confirmed_by(state, hold.id) == 1, timeout_s=10)
    async with aiohttp.ClientSession() as session:
        held = [asyncio.create_task(call(session, router, slug, "POST", "/payment/create")) for _ in range(2)]
        await wait_until(lambda: router.sample("dualstack_held_requests_waiting") == 2, timeout_s=10)
        async with session.post(f"{router.url}/payment/create", headers={"Host": f"{slug}.agentbar.ai"}) as r:
            assert (r.status, r.headers["Retry-After"], (await r.json())["error"]) == (503, "1", "write_held")
        await asyncio.to_thread(store.release, slug, "v1", hold.id)
        assert await asyncio.gather(*held) == [(200, "v1")] * 2
    assert router.sample("dualstack_held_requests_total", tenant=slug, outcome="refused") == 1
    assert router.sample("dualstack_router_outcomes_total", tenant=slug, outcome="hold_full") == 1


def test_only_the_control_role_writes_holds(state: Database) -> None:
    schema = state.layout.schema
    with psycopg.connect(state.router_url) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(f"INSERT INTO {schema}.write_holds (tenant, hold_s, expires_at) VALUES ('x', 1, now())")
    with psycopg.connect(state.router_url) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(f"UPDATE {schema}.write_holds SET release_to = 'v2'")
    with psycopg.connect(state.router_url) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(f"SELECT * FROM {schema}.hold_confirmations")  # a router cannot see the others' answers
    with psycopg.connect(state.app_url) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(f"SELECT * FROM {schema}.write_holds")


def test_a_router_registers_confirms_and_unregisters_only_as_itself(state: Database) -> None:
    """The router role reaches the registry and the confirmations only through functions keyed by
    each worker's own secret: it cannot confirm for another worker, nor remove or take over its row."""
    schema, name = state.layout.schema, f"h:1:{secrets.token_hex(4)}"
    store = HoldStore(state.control_url, schema)
    hold = store.create(tenant_slug(), 20.0, None)
    try:
        with psycopg.connect(state.router_url, autocommit=True) as conn:
            assert conn.execute(f"SELECT {schema}.register_router_worker(%s, 'h', 1, 2, 'mine')",
                                (name,)).fetchone() == (True,)
            # Another secret: no takeover, no confirmation, no removal.
            assert conn.execute(f"SELECT {schema}.register_router_worker(%s, 'h', 1, 2, 'forged')",
                                (name,)).fetchone() == (None,)
            conn.execute(f"SELECT {schema}.confirm_write_hold(%s, %s, 'forged')", (hold.id, name))
            conn.execute(f"SELECT {schema}.unregister_router_worker(%s, 'forged')", (name,))
            assert confirmed_by(state, hold.id) == 0 and name in {w.worker for w in store.alive_workers()}
            for statement in (f"INSERT INTO {schema}.hold_confirmations (hold_id, worker) VALUES ({hold.id}, 'x')",
                              f"DELETE FROM {schema}.router_workers",
                              f"UPDATE {schema}.router_workers SET last_seen = now()",
                              f"SELECT * FROM {schema}.router_workers"):
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(statement)
            conn.execute(f"SELECT {schema}.confirm_write_hold(%s, %s, 'mine')", (hold.id, name))
            assert confirmed_by(state, hold.id) == 1
            conn.execute(f"SELECT {schema}.unregister_router_worker(%s, 'mine')", (name,))
            assert name not in {w.worker for w in store.alive_workers()}
    finally:
        store.release(hold.tenant, "v1", hold.id)


async def test_a_router_started_during_a_hold_holds_from_its_first_request_and_a_client_may_leave(
        upstreams: dict[str, Upstream], make_router: RouterFactory, state: Database) -> None:
    slug = tenant_slug()
    store = HoldStore(state.control_url, state.layout.schema)
    hold = await asyncio.to_thread(store.create, slug, 20.0, None)
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, f"{slug}: {{backend: v1}}\n")
    router = await make_router(yaml, state_database_url=state.router_url, lock_poll_s=30)
    assert confirmed_by(state, hold.id) == 1  # before it served anything
    async with aiohttp.ClientSession() as session:
        first = asyncio.create_task(call(session, router, slug, "POST", "/payment/create"))
        await wait_until(lambda: router.sample("dualstack_held_requests_waiting") == 1, timeout_s=10)
        with pytest.raises(TimeoutError):  # a client that gives up while held
            async with session.post(f"{router.url}/payment/create", headers={"Host": f"{slug}.agentbar.ai"},
                                    timeout=aiohttp.ClientTimeout(total=0.3)) as response:
                await response.read()
        await wait_until(lambda: router.sample("dualstack_held_requests_total", tenant=slug, outcome="gone") == 1,
                         timeout_s=10)
        await asyncio.to_thread(store.release, slug, "v1", hold.id)
        assert await first == (200, "v1")
    assert [seen.method for seen in upstreams["v1"].seen] == ["POST"]  # the one that left never went on


class SlowV1:
    """A v1 whose answers wait until the test opens the gate: a write stays in flight as long as needed."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.arrived: list[str] = []

    def app(self) -> web.Application:
        async def answer(request: web.Request) -> web.Response:
            await request.read()
            self.arrived.append(request.path_qs)
            await self.gate.wait()
            return web.json_response({"backend": "v1"})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        return app


@pytest.fixture
async def slow_v1(aiohttp_server: Any) -> AsyncIterator[tuple[SlowV1, str]]:
    slow = SlowV1()
    server = await aiohttp_server(slow.app())
    try:
        yield slow, str(server.make_url("")).rstrip("/")
    finally:
        slow.gate.set()  # nothing stays waiting when the server closes


def last_registered(state: Database) -> datetime | None:
    """When a router worker of this process (the test's router) last registered: once per poll."""
    with psycopg.connect(state.admin_url) as conn:
        row = conn.execute(f"SELECT max(last_seen) FROM {state.layout.schema}.router_workers WHERE pid = %s",
                           (os.getpid(),)).fetchone()
    return row[0] if row else None


async def test_a_write_in_flight_when_the_hold_begins_delays_the_confirmation_until_it_finished(
        slow_v1: tuple[SlowV1, str], upstreams: dict[str, Upstream], make_router: RouterFactory,
        state: Database) -> None:
    slow, v1_url = slow_v1
    slug = tenant_slug()
    router = await make_router(routing_yaml(v1_url, upstreams["v2"].url, f"{slug}: {{backend: v1}}\n"),
                               state_database_url=state.router_url)
    store = HoldStore(state.control_url, state.layout.schema)
    await wait_until(lambda: len(store.alive_workers()) > 0, timeout_s=20)
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.create_task(call(session, router, slug, "POST", "/payment/create?n=0"))
        await wait_until(lambda: slow.arrived == ["/payment/create?n=0"], timeout_s=10)
        hold = await asyncio.to_thread(store.create, slug, 20.0, None)
        await wait_until(lambda: router.sample("dualstack_write_holds_active") == 1, timeout_s=10)
        began = last_registered(state)
        assert began is not None
        # A later poll registered: the one that began the hold is over, and it did not confirm.
        await wait_until(lambda: (last_registered(state) or began) > began, timeout_s=10)
        assert confirmed_by(state, hold.id) == 0
        assert router.sample("dualstack_write_holds_draining") == 1
        held = asyncio.create_task(call(session, router, slug, "POST", "/payment/create?n=1"))
        await wait_until(lambda: router.sample("dualstack_held_requests_waiting") == 1, timeout_s=10)

        slow.gate.set()
        assert await in_flight == (200, "v1")
        await wait_until(lambda: confirmed_by(state, hold.id) == 1, timeout_s=10)
        assert router.sample("dualstack_write_holds_draining") == 0
        assert slow.arrived == ["/payment/create?n=0"]  # the write that arrived during the hold still waits
        await asyncio.to_thread(store.release, slug, "v1", hold.id)
        assert await held == (200, "v1")
    assert slow.arrived == ["/payment/create?n=0", "/payment/create?n=1"]


async def test_a_write_in_flight_longer_than_the_hold_makes_the_cutover_abort_with_nothing_flipped(
        slow_v1: tuple[SlowV1, str], upstreams: dict[str, Upstream], make_router: RouterFactory,
        state: Database) -> None:
    slow, v1_url = slow_v1
    slug = tenant_slug()
    yaml = routing_yaml(v1_url, upstreams["v2"].url, f"{slug}: {{backend: v1}}\n")
    router = await make_router(yaml, state_database_url=state.router_url)
    store = HoldStore(state.control_url, state.layout.schema)
    await wait_until(lambda: len(store.alive_workers()) > 0, timeout_s=20)
    request = CutoverRequest(router.config_path, slug, "v2", state_url=state.control_url,
                             state_schema=state.layout.schema)
    said: list[str] = []
    async with aiohttp.ClientSession() as session:
        in_flight = asyncio.create_task(call(session, router, slug, "POST", "/payment/create?n=0"))
        await wait_until(lambda: slow.arrived == ["/payment/create?n=0"], timeout_s=10)
        with pytest.raises(CutoverStopped, match=rf"hold: 1 router worker\(s\) did not confirm the hold of "
                                                 rf"{slug}'s writes within 1 s .*Nothing was flipped"):
            await asyncio.to_thread(take, request, CutoverPolicy(hold_s=1.0), "v1", None, said.append)
        assert store.open_holds(slug) == []
        slow.gate.set()
        assert await in_flight == (200, "v1")
        await wait_until(lambda: router.sample("dualstack_write_holds_active") == 0, timeout_s=10)
        assert await call(session, router, slug, "POST", "/payment/create?n=1") == (200, "v1")
    assert router.config_path.read_text() == yaml
    assert not any(seen.method == "POST" for seen in upstreams["v2"].seen)


async def test_a_hold_whose_ending_is_cancelled_part_way_still_lets_its_writes_go_on(
        tmp_path: Path, upstreams: dict[str, Upstream]) -> None:
    """The poll that saw the release timed out while the router re-read its routing file: the ending
    goes on without it, and the held writes go on to the backend they were released to."""
    slug = tenant_slug()
    path = tmp_path / "routing.yaml"
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, f"{slug}: {{backend: v1}}\n")
    path.write_text(yaml)
    metrics = ProxyMetrics(CollectorRegistry())
    holds = WriteHolds(RouterState(ConfigFile(path), metrics), metrics)
    holds.begin(1, slug, 20.0)
    waiter = asyncio.create_task(holds.wait(slug))
    await asyncio.sleep(0)  # the write is waiting in the hold
    path.write_text(yaml.replace("backend: v1", "backend: v2"))  # the flip
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):  # cancelled at its first wait: the routing file's reload
            await holds.end(1, "v2", "released")
    await wait_until(waiter.done, timeout_s=10)
    assert not holds.holds(slug)
    route = holds.state.table.route_for(slug)
    assert route is not None and route.backend == "v2"
    assert metrics.write_holds.labels(slug, "released")._value.get() == 1
    await holds.close()


async def test_a_worker_holding_a_tenant_polls_well_inside_the_hold_even_without_a_notification(
        upstreams: dict[str, Upstream], make_router: RouterFactory, state: Database) -> None:
    """Its LISTEN connection lost the NOTIFY (here: a release written without one): a worker that
    polls every 30 s otherwise still sees the release while it holds the tenant."""
    slug = tenant_slug()
    router = await make_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, f"{slug}: {{backend: v1}}\n"),
                               state_database_url=state.router_url, lock_poll_s=30)
    store = HoldStore(state.control_url, state.layout.schema)
    await wait_until(lambda: len(store.alive_workers()) > 0, timeout_s=20)
    hold = await asyncio.to_thread(store.create, slug, 20.0, None)
    await wait_until(lambda: confirmed_by(state, hold.id) == 1, timeout_s=10)
    with psycopg.connect(state.admin_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {state.layout.schema}.write_holds SET release_to = 'v1', released_at = now() "
                     "WHERE id = %s", (hold.id,))
    await wait_until(lambda: router.sample("dualstack_write_holds_total", tenant=slug, outcome="released") == 1,
                     timeout_s=10)

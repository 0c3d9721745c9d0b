"""Rollback locks: taken from the CLI, applied by routers, kept when the state database is gone."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from controlplane.cli import ExitStatus, run
from controlplane.config import load_config_text
from controlplane.db.migrate import bundled_migrations, migrate
from controlplane.state.locks import LockStore
from controlplane.state.schema import STATE_SCHEMA
from proxy.router.locks import LOCK_POLL_S, read_state
from tests.conftest import SERVER_URL, Database, Router, RouterFactory, Upstream, routing_yaml, wait_until

TENANTS = "shop: {backend: v2}\nother: {backend: v2}\n"


async def served_by(router: Router, tenant: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(
        f"{router.url}/x", headers={"Host": f"{tenant}.agentbar.ai"}
    ) as response:
        return str((await response.json())["backend"])


async def test_rollback_status_ack(upstreams: dict[str, Upstream], make_router: RouterFactory, state: Database,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS)
    router = await make_router(yaml, state_database_url=state.router_url)
    args = ["--config", str(router.config_path), "--state-database-url", state.control_url]
    assert await served_by(router, "shop") == "v2"
    assert run(["rollout", "rollback", "shop", "--reason", "v2 error rate 5%", *args]) == ExitStatus.OK
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    said = capsys.readouterr().out  # the CLI and the README promise what the routers do: one lock poll
    assert f"reads locks every {LOCK_POLL_S:g} s" in said and f"reads locks every {LOCK_POLL_S:g} s" in readme
    for _ in range(100):  # the router polls locks every 0.1 s here (2 s in production)
        if await served_by(router, "shop") == "v1":
            break
        await asyncio.sleep(0.05)
    assert await served_by(router, "shop") == "v1" and await served_by(router, "other") == "v2"
    assert router.sample("dualstack_tenant_backend", tenant="shop", backend="v1") == 1
    assert router.sample("dualstack_rollout_locks") == 1
    async with aiohttp.ClientSession() as session, session.get(router.admin.make_url("/routes")) as response:
        view = (await response.json())["tenants"]["shop"]
    assert (view["backend"], view["declared_backend"]) == ("v1", "v2") and "v2 error rate 5%" in view["override"]
    capsys.readouterr()
    assert run(["rollout", "explain", "shop", "--state-database-url", state.control_url]) == ExitStatus.OK
    assert capsys.readouterr().out.startswith("shop: pinned to v1 by a rollback lock since ")
    assert run(["rollout", "status", *args]) == ExitStatus.OK
    out = capsys.readouterr().out
    assert any(line.split()[:3] == ["shop", "v2", "v1"] and "v2 error rate 5%" in line for line in out.splitlines())
    assert run(["rollout", "ack", "shop", "--state-database-url", state.control_url]) == ExitStatus.OK
    await wait_until(lambda: router.sample("dualstack_tenant_backend", tenant="shop", backend="v2") == 1)
    assert await served_by(router, "shop") == "v2"
    with psycopg.connect(state.admin_url) as conn:
        kinds = [r[0] for r in conn.execute(f"SELECT kind FROM {STATE_SCHEMA}.rollout_events WHERE tenant = 'shop' "
                                             "ORDER BY id").fetchall()]
    assert kinds[-2:] == ["rollback", "ack"]


async def test_a_router_that_starts_while_a_tenant_is_rolled_back_serves_it_from_v1_at_once(
        upstreams: dict[str, Upstream], make_router: RouterFactory, state: Database) -> None:
    """A worker that (re)starts reads the locks before its first request: it never routes a rolled-back
    tenant to v2 for the length of a poll (here the poll is an hour: only the first read can know)."""
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS)
    tenant = "shop"
    with psycopg.connect(state.admin_url) as conn:
        conn.execute(f"DELETE FROM {STATE_SCHEMA}.rollout_locks WHERE tenant = %s", (tenant,))
    LockStore(state.control_url, STATE_SCHEMA).rollback(load_config_text(yaml), tenant, "pinned before start", "ops")
    try:
        router = await make_router(yaml, state_database_url=state.router_url, lock_poll_s=3600)
        assert await served_by(router, tenant) == "v1" and await served_by(router, "other") == "v2"
    finally:
        LockStore(state.control_url, STATE_SCHEMA).ack(tenant, "ops")


async def test_changing_the_tenants_entry_releases_the_lock(upstreams: dict[str, Upstream],
                                                            make_router: RouterFactory, state: Database,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    tenant = "t" + secrets.token_hex(3)
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, f"{tenant}: {{backend: v2}}\n")
    router = await make_router(yaml, state_database_url=state.router_url)
    args = ["--config", str(router.config_path), "--state-database-url", state.control_url]
    assert run(["rollout", "rollback", tenant, "--reason", "test", *args]) == ExitStatus.OK
    await wait_until(lambda: router.sample("dualstack_tenant_backend", tenant=tenant, backend="v1") == 1)
    # Ops take the tenant back to v1 in the file, then to v2 again: the old lock must not come back.
    Path(router.config_path).write_text(yaml.replace("backend: v2", "backend: v1"))
    capsys.readouterr()
    assert run(["rollout", "status", *args]) == ExitStatus.OK
    assert f"{tenant}: lock released, its routing entry changed" in capsys.readouterr().out
    Path(router.config_path).write_text(yaml + "# again\n")
    await wait_until(lambda: router.sample("dualstack_tenant_backend", tenant=tenant, backend="v2") == 1)


async def test_a_router_keeps_its_last_known_locks_when_the_database_is_gone(
    upstreams: dict[str, Upstream], make_router: RouterFactory, database: Database
) -> None:
    name = "dualstack_locks_" + secrets.token_hex(3)
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    admin_url = make_conninfo(SERVER_URL, dbname=name)
    layout = dataclasses.replace(database.layout, schema=STATE_SCHEMA)
    migrate(admin_url, layout, migrations=bundled_migrations("controlplane.state"))
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS)
    router = await make_router(yaml, state_database_url=make_conninfo(admin_url, user=layout.router_role))
    try:
        assert run(["rollout", "rollback", "shop", "--reason", "incident", "--config", str(router.config_path),
                    "--state-database-url", make_conninfo(admin_url, user=layout.control_role)]) == ExitStatus.OK
        await wait_until(lambda: router.sample("dualstack_tenant_backend", tenant="shop", backend="v1") == 1)
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await wait_until(lambda: router.sample("dualstack_rollout_locks_refresh_success") == 0)
    assert await served_by(router, "shop") == "v1"  # the rollback holds while the database is gone


async def test_no_path_sends_a_tenant_to_a_v1_that_does_not_hold_it(
    upstreams: dict[str, Upstream], make_router: RouterFactory, state: Database,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """v1 holds only `shop`'s orders. `alpha` never lived on v1: sent there, alpha's host would serve
    shop's customers. Neither the CLI nor a lock written by anyone else may do it."""
    alpha = "a" + secrets.token_hex(3)
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, f"shop: {{backend: v1}}\n{alpha}: {{backend: v2}}\n",
                        v1_tenants=["shop"])
    router = await make_router(yaml, state_database_url=state.router_url)
    args = ["--config", str(router.config_path), "--state-database-url", state.control_url]
    capsys.readouterr()
    assert run(["rollout", "rollback", alpha, "--reason", "v2 looks bad", *args]) == ExitStatus.INVALID
    assert f"v1 does not hold {alpha}'s orders" in capsys.readouterr().err
    # A lock written around the CLI (an older decider, a hand-made row): the router refuses it.
    with psycopg.connect(state.admin_url) as conn:
        conn.execute(f"INSERT INTO {STATE_SCHEMA}.rollout_locks (tenant, backend, declared_backend, reason, actor) "
                     "VALUES (%s, 'v1', 'v2', 'hand-made', 'someone')", (alpha,))
    try:
        await wait_until(lambda: router.sample("dualstack_rollout_locks_refused") == 1)
        seen_before = len(upstreams["v1"].seen)
        for _ in range(5):
            assert await served_by(router, alpha) == "v2"
        assert len(upstreams["v1"].seen) == seen_before  # none of alpha's requests reached v1
        async with aiohttp.ClientSession() as session, session.get(router.admin.make_url("/routes")) as response:
            view = (await response.json())["tenants"][alpha]
        assert view["backend"] == "v2" and f"v1 does not hold {alpha}'s orders" in view["refused_lock"]
    finally:
        with psycopg.connect(state.admin_url) as conn:
            conn.execute(f"DELETE FROM {STATE_SCHEMA}.rollout_locks WHERE tenant = %s", (alpha,))


def open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the directory's own descriptor is gone by now
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


@contextlib.contextmanager
def stalled_state_database(state: Database, how: str) -> Iterator[str]:
    """A state database URL whose lock read never finishes: a server that accepts and never
    answers, or a real one whose `rollout_locks` the test holds locked."""
    if how == "silent server":
        with socket.create_server(("127.0.0.1", 0)) as listener:  # connections wait in its backlog
            yield make_conninfo(state.router_url, port=listener.getsockname()[1])
        return
    with psycopg.connect(state.admin_url) as holder:
        holder.execute(f"LOCK TABLE {STATE_SCHEMA}.rollout_locks IN ACCESS EXCLUSIVE MODE")
        yield state.router_url
        holder.rollback()


@pytest.mark.parametrize("how", ["silent server", "locked table"])
async def test_timed_out_lock_reads_leave_no_socket_open(state: Database, how: str) -> None:
    """Each timed-out read once left its socket open until garbage collection (2 -> 10 sockets)."""
    gc.disable()  # what only the collector would close counts as open
    try:
        with stalled_state_database(state, how) as url:
            before = open_sockets()
            for _ in range(8):
                with pytest.raises(TimeoutError):
                    await read_state(url, STATE_SCHEMA, timeout_s=0.2)
            await asyncio.sleep(0)  # the last attempt's half-open connection is let go on the next step
            assert open_sockets() <= before
    finally:
        gc.enable()

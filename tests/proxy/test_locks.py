"""Rollback locks: taken from the CLI, applied by routers, kept when the state database is gone."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from pathlib import Path

import aiohttp
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from controlplane.cli import ExitStatus, run
from controlplane.db.migrate import bundled_migrations, migrate
from controlplane.shadow.samples import STATE_SCHEMA
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
    router = await make_router(yaml, state_database_url=state.app_url)
    args = ["--config", str(router.config_path), "--state-database-url", state.app_url]
    assert await served_by(router, "shop") == "v2"
    assert run(["rollout", "rollback", "shop", "--reason", "v2 error rate 5%", *args]) == ExitStatus.OK
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
    assert run(["rollout", "status", *args]) == ExitStatus.OK
    out = capsys.readouterr().out
    assert any(line.split()[:3] == ["shop", "v2", "v1"] and "v2 error rate 5%" in line for line in out.splitlines())
    assert run(["rollout", "ack", "shop", "--state-database-url", state.app_url]) == ExitStatus.OK
    await wait_until(lambda: router.sample("dualstack_tenant_backend", tenant="shop", backend="v2") == 1)
    assert await served_by(router, "shop") == "v2"
    with psycopg.connect(state.admin_url) as conn:
        kinds = [r[0] for r in conn.execute(f"SELECT kind FROM {STATE_SCHEMA}.rollout_events WHERE tenant = 'shop' "
                                             "ORDER BY id").fetchall()]
    assert kinds[-2:] == ["rollback", "ack"]


async def test_changing_the_tenants_entry_releases_the_lock(upstreams: dict[str, Upstream],
                                                            make_router: RouterFactory, state: Database,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    tenant = "t" + secrets.token_hex(3)
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, f"{tenant}: {{backend: v2}}\n")
    router = await make_router(yaml, state_database_url=state.app_url)
    args = ["--config", str(router.config_path), "--state-database-url", state.app_url]
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
    migrate(admin_url, layout, migrations=bundled_migrations("state_migrations"))
    app_url = make_conninfo(admin_url, user=layout.app_role)
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS)
    router = await make_router(yaml, state_database_url=app_url)
    try:
        assert run(["rollout", "rollback", "shop", "--reason", "incident", "--config", str(router.config_path),
                    "--state-database-url", app_url]) == ExitStatus.OK
        await wait_until(lambda: router.sample("dualstack_tenant_backend", tenant="shop", backend="v1") == 1)
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await wait_until(lambda: router.sample("dualstack_rollout_locks_refresh_success") == 0)
    assert await served_by(router, "shop") == "v1"  # the rollback holds while the database is gone

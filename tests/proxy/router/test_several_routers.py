"""Three router processes, each with its own port and admin port, and one state database: a rollback
taken once (the CLI writes one lock) reaches every one of them, and so does its release."""

from __future__ import annotations

import secrets
from pathlib import Path

import aiohttp
import pytest

from controlplane.cli import ExitStatus, run
from controlplane.cutover.probe import router_serves
from tests.conftest import Database, Upstream, routing_yaml, wait_until
from tests.proxy.router.conftest import RouterProcess, Starter

# Each router reads locks every 2 s (production's poll): the bound only stops a broken test hanging.
REACHED_WITHIN_S = 30.0


async def served_by(router: RouterProcess, tenant: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(
        f"{router.url}/orders/1/status", headers={"Host": f"{tenant}.agentbar.ai"}
    ) as response:
        return str((await response.json())["backend"])


async def test_a_rollback_reaches_all_three_routers_and_its_release_too(
    start_router: Starter, upstreams: dict[str, Upstream], state: Database, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = "t" + secrets.token_hex(3)  # the state database is the session's: a tenant of this test's own
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, f"{tenant}: {{backend: v2}}\nother: {{backend: v2}}\n")
    monkeypatch.setenv("DUALSTACK_STATE_DATABASE_URL", state.router_url)  # what each router process is given
    routers = [await start_router(yaml) for _ in range(3)]
    assert len({r.url for r in routers} | {r.admin_url for r in routers}) == 6
    for router in routers:
        assert router_serves(router.admin_url, tenant) == ("v2", "")
        assert await served_by(router, tenant) == "v2"
    config = tmp_path / "cli.yaml"
    config.write_text(yaml)
    args = ["--config", str(config), "--state-database-url", state.control_url]
    assert run(["rollout", "rollback", tenant, "--reason", "v2 failing", *args]) == ExitStatus.OK
    capsys.readouterr()

    def everywhere(backend: str) -> bool:
        return all(router_serves(r.admin_url, tenant)[0] == backend for r in routers)

    await wait_until(lambda: everywhere("v1"), timeout_s=REACHED_WITHIN_S)
    for router in routers:
        assert await served_by(router, tenant) == "v1" and await served_by(router, "other") == "v2"
    assert run(["rollout", "ack", tenant, "--state-database-url", state.control_url]) == ExitStatus.OK
    await wait_until(lambda: everywhere("v2"), timeout_s=REACHED_WITHIN_S)
    for router in routers:
        assert await served_by(router, tenant) == "v2"

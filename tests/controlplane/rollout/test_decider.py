"""The decider end to end: real Prometheus scraping a real router; a failing tenant is rolled back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from controlplane.cli import ExitStatus, run
from controlplane.config import load_config
from controlplane.rollout.decide import Policy
from controlplane.rollout.decider import RolloutStore, run_once
from controlplane.rollout.sources import PrometheusSource
from controlplane.shadow.samples import STATE_SCHEMA
from tests.conftest import Database, RouterFactory, routing_yaml


def backend(name: str, failing: str | None = None) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        if request.headers.get("X-Tenant-Slug") == failing:
            return web.json_response({"error": "boom"}, status=500)
        return web.json_response({"backend": name})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


async def traffic(router_url: str, tenant: str, n: int) -> list[int]:
    async with aiohttp.ClientSession() as session:
        async def one() -> int:
            async with session.get(f"{router_url}/x", headers={"Host": f"{tenant}.agentbar.ai"}) as response:
                return response.status

        return list(await asyncio.gather(*(one() for _ in range(n))))


@pytest.fixture
async def webhook(aiohttp_server: Any) -> tuple[str, list[str]]:
    """A Slack-compatible webhook that keeps every text it receives."""
    notes: list[str] = []

    async def capture(request: web.Request) -> web.Response:
        notes.append((await request.json())["text"])
        return web.Response(text="ok")

    hook = web.Application()
    hook.router.add_post("/hook", capture)
    return str((await aiohttp_server(hook)).make_url("/hook")), notes


async def test_a_failing_tenant_is_rolled_back_and_routed_to_v1_while_a_healthy_one_soaks(
    aiohttp_server: Any, make_router: RouterFactory, prometheus: Any, state: Database, webhook: tuple[str, list[str]],
    capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2 = await aiohttp_server(backend("v1")), await aiohttp_server(backend("v2", failing="bad"))
    yaml = routing_yaml(str(v1.make_url("")).rstrip("/"), str(v2.make_url("")).rstrip("/"),
                        "good: {backend: v2}\nbad: {backend: v2}\n")
    router = await make_router(yaml, state_database_url=state.app_url)
    base = await prometheus([str(router.admin.make_url("")).split("//", 1)[1].rstrip("/")])
    store, source, config = RolloutStore(state.app_url, STATE_SCHEMA), PrometheusSource(base), load_config(
        router.config_path)

    for _ in range(100):  # Prometheus has seen every tenant's series at zero before the traffic
        if source.query('count(dualstack_requests_total{tenant="bad"})', datetime.now(UTC)):
            break
        await asyncio.sleep(0.1)
    started = run_once(config, store, source, Policy(), datetime.now(UTC))
    assert dict(started) == {"bad": "declared on v2: soak window started", "good": "declared on v2: soak window started"}
    assert set(await traffic(router.url, "bad", 200)) == {500}
    assert set(await traffic(router.url, "good", 200)) == {200}
    for _ in range(100):  # until Prometheus has scraped the traffic
        seen = source.query('sum(increase(dualstack_requests_total{tenant="bad"}[60s]))', datetime.now(UTC))
        if seen is not None and seen >= 150:
            break
        await asyncio.sleep(0.2)

    # A second decider cannot act while one holds the lock.
    with store.leader() as leading:
        assert leading
        assert run_once(config, store, source, Policy(), datetime.now(UTC)) == [
            ("*", "another decider is active; doing nothing")]
    # A dry run records its decision and changes nothing.
    dry = dict(run_once(config, store, source, Policy(), datetime.now(UTC), dry_run=True))
    assert dry["bad"].startswith("rollback:") and dry["bad"].endswith("(dry run)")
    assert store.locks.locks() == {}

    hook_url, notes = webhook
    decided = dict(await asyncio.to_thread(run_once, config, store, source, Policy(), datetime.now(UTC),
                                           notify_url=hook_url))
    assert decided["bad"].startswith("rollback: severe harm")
    assert len(notes) == 1 and notes[0].startswith("dualstack: bad rolled back to v1 - severe harm")
    assert decided["good"].startswith("continue")
    for _ in range(100):  # every router applies the rollback within seconds
        if set(await traffic(router.url, "bad", 5)) == {200}:
            break
        await asyncio.sleep(0.05)
    assert set(await traffic(router.url, "bad", 20)) == {200}  # now served by v1
    assert router.sample("dualstack_tenant_backend", tenant="bad", backend="v1") == 1
    assert router.sample("dualstack_tenant_backend", tenant="good", backend="v2") == 1
    # The rollout state is exported by the routers too.
    for _ in range(100):
        if router.sample("dualstack_rollout_phase", tenant="bad", phase="rolled_back") == 1:
            break
        await asyncio.sleep(0.05)
    assert router.sample("dualstack_rollout_phase", tenant="bad", phase="rolled_back") == 1
    assert router.sample("dualstack_rollout_phase", tenant="good", phase="soaking") == 1
    assert router.sample("dualstack_rollout_last_decision_timestamp_seconds", tenant="bad", action="rollback") > 0
    assert router.sample("dualstack_rollout_soak_started_timestamp_seconds", tenant="good") > 1.7e9
    assert dict(run_once(config, store, source, Policy(), datetime.now(UTC)))["bad"].startswith(
        "rolled back and pinned to v1")

    capsys.readouterr()
    assert run(["rollout", "explain", "bad", "--state-database-url", state.app_url]) == ExitStatus.OK
    story = capsys.readouterr().out
    assert story.startswith("bad: rolled back; soak started")
    assert "decision: rollback (no_go) [dry run]: severe harm" in story
    assert "rollback by decider" in story and "burn_rate: fail" in story


async def test_a_prometheus_outage_holds(state: Database, tmp_path: Any) -> None:
    config_path = tmp_path / "routing.yaml"
    config_path.write_text(routing_yaml("http://127.0.0.1:1", "http://127.0.0.1:2", "quiet: {backend: v2}\n"))
    config = load_config(config_path)
    store, source = RolloutStore(state.app_url, STATE_SCHEMA), PrometheusSource("http://127.0.0.1:9", timeout_s=1)
    run_once(config, store, source, Policy(), datetime.now(UTC))
    decided = dict(run_once(config, store, source, Policy(), datetime.now(UTC)))
    assert decided["quiet"].startswith("hold: no evidence could be read")
    assert store.locks.locks().get("quiet") is None


async def test_ops_can_hold_resume_and_promote(webhook: tuple[str, list[str]], state: Database, tmp_path: Any) -> None:
    hook_url, notes = webhook
    config_path = tmp_path / "routing.yaml"
    config_path.write_text(routing_yaml("http://127.0.0.1:1", "http://127.0.0.1:2", "calm: {backend: v2}\n"))
    config = load_config(config_path)
    store, source = RolloutStore(state.app_url, STATE_SCHEMA), PrometheusSource("http://127.0.0.1:9", timeout_s=1)
    run_once(config, store, source, Policy(), datetime.now(UTC))
    common = ["--state-database-url", state.app_url, "--notify-url", hook_url]

    async def cli(*args: str) -> ExitStatus:
        return await asyncio.to_thread(run, [*args, *common])

    assert await cli("rollout", "hold", "calm", "--reason", "marketing launch") == ExitStatus.OK
    assert dict(run_once(config, store, source, Policy(), datetime.now(UTC)))["calm"].startswith("held by ops")
    assert await cli("rollout", "resume", "calm", "--reason", "launch over") == ExitStatus.OK
    assert dict(run_once(config, store, source, Policy(), datetime.now(UTC)))["calm"].startswith("hold: no evidence")
    assert await cli("rollout", "promote", "calm", "--reason", "verified by hand") == ExitStatus.OK
    assert store.rollouts()["calm"].phase == "promoted"
    assert [n.split(" - ")[0].split(" by ")[0] for n in notes] == [
        "dualstack: calm hold", "dualstack: calm resume", "dualstack: calm promote"]
    # A notification that cannot be delivered never stops an action.
    assert await asyncio.to_thread(run, ["rollout", "hold", "calm", "--reason", "x", "--state-database-url",
                                         state.app_url, "--notify-url", "http://127.0.0.1:9/hook"]) == ExitStatus.OK
    assert await cli("rollout", "promote", "nobody", "--reason", "x") == ExitStatus.USAGE

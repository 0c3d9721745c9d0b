"""The decider end to end: real Prometheus scraping a real router; a failing tenant is rolled back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane.cli import ExitStatus, run
from controlplane.config import load_config
from controlplane.rollout.decide import Policy
from controlplane.rollout.decider import run_once
from controlplane.rollout.sources import PrometheusSource
from controlplane.state.rollouts import RolloutStore
from controlplane.state.schema import STATE_SCHEMA
from tests.conftest import Database, RouterFactory, routing_yaml, tenant_app, tenant_traffic
from tests.controlplane.rollout.conftest import STEP_S


async def test_a_failing_tenant_is_rolled_back_and_routed_to_v1_while_a_healthy_one_soaks(
    aiohttp_server: Any, make_router: RouterFactory, prometheus: Any, state: Database, webhook: tuple[str, list[str]],
    capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2 = await aiohttp_server(tenant_app("v1")), await aiohttp_server(tenant_app("v2", failing="bad"))
    yaml = routing_yaml(str(v1.make_url("")).rstrip("/"), str(v2.make_url("")).rstrip("/"),
                        "good: {backend: v2}\nbad: {backend: v2}\nother: {backend: v1}\n")
    router = await make_router(yaml, state_database_url=state.router_url)
    base = await prometheus([str(router.admin.make_url("")).split("//", 1)[1].rstrip("/")])
    store, config = RolloutStore(state.control_url, STATE_SCHEMA), load_config(router.config_path)
    source = PrometheusSource(base, lag_s=1.0, step_s=STEP_S)  # short slices: the test cannot wait minutes

    started = run_once(config, store, source, Policy(), datetime.now(UTC))
    assert dict(started) == {"bad": "declared on v2: soak window started", "good": "declared on v2: soak window started"}
    # A tenant entering a rollout gets its series at zero (the router reads the rollout from the state
    # database); Prometheus has seen them before the traffic, so the first errors show as an increase.
    for _ in range(100):
        if source.query('count(dualstack_requests_total{tenant="bad",code_class="5xx"})', datetime.now(UTC)):
            break
        await asyncio.sleep(0.1)
    for _ in range(3):  # three slices in a row: no single slice can roll back alone
        assert set(await tenant_traffic(router.url, "bad", 60)) == {500}
        assert set(await tenant_traffic(router.url, "good", 60)) == {200}
        # v1 answers another tenant in the same minutes: the concurrent baseline that tells v2's failure
        # from a shared one (without it, the decider holds rather than blame v2 at once)
        assert set(await tenant_traffic(router.url, "other", 60)) == {200}
        await asyncio.sleep(STEP_S + 0.5)
    for _ in range(100):  # until Prometheus has scraped the traffic
        seen = source.query('sum(increase(dualstack_requests_total{tenant="bad",route="read"}[60s]))',
                            datetime.now(UTC))
        if seen is not None and seen >= 150:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(STEP_S)

    # A second decider cannot act while one holds the lock.
    with store.leader() as leading:
        assert leading
        assert run_once(config, store, source, Policy(), datetime.now(UTC)) == [
            ("*", "another decider is active; doing nothing")]
    # A dry run records its decision and changes nothing.
    dry = dict(run_once(config, store, source, Policy(), datetime.now(UTC), dry_run=True))
    assert dry["bad"].startswith("rollback: severe harm: v2's errors have credibly risen") and dry["bad"].endswith(
        "(dry run)")
    assert not {"bad", "good"} & store.locks.locks().keys()  # (the shared state database may hold other tests' locks)

    hook_url, notes = webhook
    decided = dict(await asyncio.to_thread(run_once, config, store, source, Policy(), datetime.now(UTC),
                                           notify_url=hook_url))
    assert decided["bad"].startswith("rollback: severe harm")
    assert len(notes) == 1 and notes[0].startswith("dualstack: bad rolled back to v1 - severe harm")
    assert decided["good"].startswith("continue")
    for _ in range(100):  # every router applies the rollback within seconds
        if set(await tenant_traffic(router.url, "bad", 5)) == {200}:
            break
        await asyncio.sleep(0.05)
    assert set(await tenant_traffic(router.url, "bad", 20)) == {200}  # now served by v1
    assert router.sample("dualstack_tenant_backend", tenant="bad", backend="v1") == 1
    assert router.sample("dualstack_tenant_backend", tenant="good", backend="v2") == 1
    # The rollout state is exported by the routers too.
    for _ in range(100):
        if router.sample("dualstack_rollout_phase", tenant="bad", phase="rolled_back") == 1:
            break
        await asyncio.sleep(0.05)
    assert router.sample("dualstack_rollout_phase", tenant="bad", phase="rolled_back") == 1
    assert router.sample("dualstack_rollout_phase", tenant="good", phase="soaking") == 1
    assert router.sample("dualstack_rollout_last_decision_timestamp_seconds", tenant="bad", action="rollback",
                         verdict="no_go") > 0
    assert router.sample("dualstack_rollout_soak_started_timestamp_seconds", tenant="good") > 1.7e9
    assert dict(run_once(config, store, source, Policy(), datetime.now(UTC)))["bad"].startswith(
        "rolled back and pinned to v1")

    capsys.readouterr()
    assert run(["rollout", "explain", "bad", "--state-database-url", state.control_url]) == ExitStatus.OK
    story = capsys.readouterr().out
    first, second = story.splitlines()[:2]  # the lock that routes the tenant comes before the rollout's phase
    assert first.startswith("bad: pinned to v1 by a rollback lock since ") and "rollout ack bad` releases it" in first
    assert second.startswith("bad: rollout rolled back; soak started")
    assert "decision: rollback (no_go) [dry run]: severe harm" in story
    assert "rollback by decider" in story and "page: fail" in story
    assert ("baseline: an assumed v1 rate: no concurrent baseline (v1 answered neither other traffic nor shadow "
            "copies in the same minutes)") in story
    assert "of the way to a rollback" in story


async def test_a_prometheus_outage_holds(state: Database, tmp_path: Any) -> None:
    config_path = tmp_path / "routing.yaml"
    config_path.write_text(routing_yaml("http://127.0.0.1:1", "http://127.0.0.1:2", "quiet: {backend: v2}\n"))
    config = load_config(config_path)
    store, source = RolloutStore(state.control_url, STATE_SCHEMA), PrometheusSource("http://127.0.0.1:9", timeout_s=1)
    run_once(config, store, source, Policy(), datetime.now(UTC))
    decided = dict(run_once(config, store, source, Policy(), datetime.now(UTC)))
    assert decided["quiet"].startswith("hold: no evidence could be read")
    assert store.locks.locks().get("quiet") is None


async def test_ops_can_hold_resume_and_promote(webhook: tuple[str, list[str]], state: Database, tmp_path: Any) -> None:
    hook_url, notes = webhook
    config_path = tmp_path / "routing.yaml"
    config_path.write_text(routing_yaml("http://127.0.0.1:1", "http://127.0.0.1:2", "calm: {backend: v2}\n"))
    config = load_config(config_path)
    store, source = RolloutStore(state.control_url, STATE_SCHEMA), PrometheusSource("http://127.0.0.1:9", timeout_s=1)
    run_once(config, store, source, Policy(), datetime.now(UTC))
    common = ["--state-database-url", state.control_url, "--notify-url", hook_url]

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
                                         state.control_url, "--notify-url", "http://127.0.0.1:9/hook"]) == ExitStatus.OK
    assert await cli("rollout", "promote", "nobody", "--reason", "x") == ExitStatus.USAGE


async def test_a_hold_is_notified_once_until_its_reason_changes(webhook: tuple[str, list[str]], state: Database,
                                                                 tmp_path: Any) -> None:
    hook_url, notes = webhook
    config_path = tmp_path / "routing.yaml"
    config_path.write_text(routing_yaml("http://127.0.0.1:1", "http://127.0.0.1:2", "hushed: {backend: v2}\n"))
    config = load_config(config_path)
    store, source = RolloutStore(state.control_url, STATE_SCHEMA), PrometheusSource("http://127.0.0.1:9", timeout_s=1)
    run_once(config, store, source, Policy(), datetime.now(UTC))
    for _ in range(3):
        said = await asyncio.to_thread(run_once, config, store, source, Policy(), datetime.now(UTC),
                                       notify_url=hook_url)
        assert dict(said)["hushed"].startswith("hold: no evidence could be read"), said
    assert len(notes) == 1 and notes[0].startswith("dualstack: hushed held on v2 - no evidence could be read")

"""The decider never rolls a tenant back to a v1 that does not hold it: its decision is a hold, it tells
ops, and keeps deciding (the alert pages while it lasts)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane.config import load_config
from controlplane.rollout.decide import Policy
from controlplane.rollout.decider import run_once
from controlplane.rollout.sources import PrometheusSource
from controlplane.state.rollouts import Phase, RolloutStore
from controlplane.state.schema import STATE_SCHEMA
from tests.conftest import Database, RouterFactory, routing_yaml, tenant_app, tenant_traffic
from tests.controlplane.rollout.conftest import STEP_S


async def test_a_failing_tenant_v1_does_not_hold_is_held_on_v2_and_ops_are_told(
    aiohttp_server: Any, make_router: RouterFactory, prometheus: Any, state: Database, webhook: tuple[str, list[str]],
    capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2 = await aiohttp_server(tenant_app("v1")), await aiohttp_server(tenant_app("v2", failing="fresh"))
    # `fresh` never lived on v1: v1's database holds only `legacy`.
    yaml = routing_yaml(str(v1.make_url("")).rstrip("/"), str(v2.make_url("")).rstrip("/"),
                        "legacy: {backend: v1}\nfresh: {backend: v2}\n", v1_tenants=["legacy"])
    router = await make_router(yaml, state_database_url=state.router_url)
    base = await prometheus([str(router.admin.make_url("")).split("//", 1)[1].rstrip("/")])
    store = RolloutStore(state.control_url, STATE_SCHEMA)
    source = PrometheusSource(base, lag_s=1.0, step_s=STEP_S)  # short slices: the test cannot wait minutes
    config = load_config(router.config_path)
    run_once(config, store, source, Policy(), datetime.now(UTC))
    for _ in range(100):  # its series at zero, once the router has read the rollout, before the traffic
        if source.query('count(dualstack_requests_total{tenant="fresh",code_class="5xx"})', datetime.now(UTC)):
            break
        await asyncio.sleep(0.1)
    for _ in range(3):  # three slices in a row: no single slice can roll back alone
        assert set(await tenant_traffic(router.url, "fresh", 60)) == {500}
        assert set(await tenant_traffic(router.url, "legacy", 60)) == {200}  # v1's concurrent baseline
        await asyncio.sleep(STEP_S + 0.5)
    for _ in range(100):
        seen = source.query('sum(increase(dualstack_requests_total{tenant="fresh",route="read"}[60s]))',
                            datetime.now(UTC))
        if seen is not None and seen >= 150:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(STEP_S)
    hook_url, notes = webhook
    # The decision itself is a hold, dry run or not: no rollback is ever recorded or reported.
    dry = dict(run_once(config, store, source, Policy(), datetime.now(UTC), dry_run=True))
    assert dry["fresh"].startswith("hold: holding: v1 does not hold this tenant") and dry["fresh"].endswith(
        "(dry run)"), dry
    for _ in range(2):  # decided again on the next run: it keeps being watched
        decided = dict(await asyncio.to_thread(run_once, config, store, source, Policy(), datetime.now(UTC),
                                               notify_url=hook_url))
        assert decided["fresh"].startswith("hold: holding: v1 does not hold this tenant, so it stays on v2 "
                                           "although its soak fails (severe harm"), decided
    assert len(notes) == 1 and notes[0].startswith("dualstack: fresh held on v2 - holding: v1 does not hold"), notes
    recorded, _ = store.history("fresh", 10)
    assert [(d.action, d.verdict, d.dry_run) for d in recorded] == [("hold", "no_go", False)] * 2 + [
        ("hold", "no_go", True)]
    assert any("v1 does not hold fresh's orders" in r for d in recorded for r in d.reasons)
    assert "fresh" not in store.locks.locks()  # no lock was written
    assert store.rollouts()["fresh"].phase is Phase.SOAKING  # still decided every run, so the alerts see it
    for _ in range(100):  # the routers export it for DualstackRolloutNoWayBack
        if router.sample("dualstack_rollout_last_decision_timestamp_seconds", tenant="fresh", action="hold",
                         verdict="no_go"):
            break
        await asyncio.sleep(0.05)
    assert router.sample("dualstack_rollout_last_decision_timestamp_seconds", tenant="fresh", action="hold",
                         verdict="no_go") > 0
    assert set(await tenant_traffic(router.url, "fresh", 5)) == {500}  # still v2 (failing): never v1's customers

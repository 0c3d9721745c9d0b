"""The embedded evidence source: the routers' own /metrics, no Prometheus."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controlplane.cli import ExitStatus, run
from controlplane.rollout.embedded import _slice, counters_of, deltas, history, increase, read_routers, series_key
from tests.conftest import (
    Database,
    RouterFactory,
    routing_yaml,
    shadow_config,
    tenant_app,
    tenant_traffic,
    wait_until,
)


def test_a_router_restart_counts_from_zero_and_never_pulls_in_the_other_routers_totals() -> None:
    assert increase(5, 100) == 5 and increase(130, 100) == 30 and increase(7, None) == 7
    before = {"a|v2|read|ok": 1000.0, "b|v2|read|ok": 5000.0, "a|v2|read|err": 10.0, "b|v2|read|err": 40.0}
    # Router a restarted and has counted 12 requests (1 error) since; b counted 100 more (1 error).
    after = {"a|v2|read|ok": 11.0, "b|v2|read|ok": 5099.0, "a|v2|read|err": 1.0, "b|v2|read|err": 41.0}
    d = deltas(after, before)
    assert d == {"v2|read|ok": 110.0, "v2|read|err": 2.0}  # summed first, it would be -1,000 or 6,000
    s = _slice(d, 60.0, 60.0)
    assert (s.v2_requests, s.v2_errors) == ((112, 0, 0), (2, 0, 0))


def test_v1_counts_every_tenant_and_the_history_only_this_one() -> None:
    first = {"a|v1|read|ok|own": 900.0, "a|v1|read|err|own": 9.0, "a|v1|write|ok": 50.0, "a|shadow|match": 3.0}
    assert history(first) is not None and history(first).requests == (909, 0, 0)  # type: ignore[union-attr]
    s = _slice(deltas(first, {}), 60.0, 60.0)
    assert s.v1_requests == (909, 50, 0) and s.shadow.matches == 3


def test_v1s_answers_to_the_tenants_shadow_copies_are_read_as_its_concurrent_baseline() -> None:
    def key(side: str, backend: str, code: str, tenant: str = "shop") -> str | None:
        return series_key("a", "dualstack_shadow_answers_total",
                          {"tenant": tenant, "side": side, "backend": backend, "code_class": code}, "shop")

    assert key("shadow", "v1", "5xx") == "a|v1shadow|err" and key("shadow", "v1", "2xx") == "a|v1shadow|ok"
    assert key("primary", "v2", "2xx") is None and key("shadow", "v1", "2xx", tenant="other") is None
    s = _slice(deltas({"a|v1shadow|ok": 57.0, "a|v1shadow|err": 3.0}, {}), 60.0, 60.0)
    assert s.v1_shadow == (60, 3) and s.v1_requests == (0, 0, 0)


async def test_the_decider_rolls_back_from_the_routers_own_metrics(
    aiohttp_server: Any, make_router: RouterFactory, state: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2 = await aiohttp_server(tenant_app("v1")), await aiohttp_server(tenant_app("v2", failing="sick"))
    yaml = routing_yaml(str(v1.make_url("")).rstrip("/"), str(v2.make_url("")).rstrip("/"),
                        "fine: {backend: v2}\nsick: {backend: v2}\nother: {backend: v1}\n")
    router = await make_router(yaml, state_database_url=state.router_url)
    decide = ["rollout", "decide", "--once", "--config", str(router.config_path), "--state-database-url",
              state.control_url, "--metrics-url", str(router.admin.make_url("/metrics"))]

    async def once() -> str:
        capsys.readouterr()
        assert await asyncio.to_thread(run, decide) == ExitStatus.OK
        return capsys.readouterr().out

    assert "sick: declared on v2: soak window started" in await once()
    assert "sick: continue" in await once()  # the first snapshot of the soak: nothing counted yet
    for _ in range(2):  # one slice is never enough alone
        assert set(await tenant_traffic(router.url, "sick", 100)) == {500}
        assert set(await tenant_traffic(router.url, "fine", 100)) == {200}
        assert set(await tenant_traffic(router.url, "other", 100)) == {200}  # v1's concurrent baseline
        out = await once()
    assert "sick: rollback: severe harm" in out and "fine: continue" in out
    for _ in range(100):
        if set(await tenant_traffic(router.url, "sick", 5)) == {200}:
            break
        await asyncio.sleep(0.05)
    assert set(await tenant_traffic(router.url, "sick", 10)) == {200}  # served by v1 now


async def test_an_unreachable_router_holds(state: Database, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "routing.yaml"
    config.write_text(routing_yaml("http://127.0.0.1:1", "http://127.0.0.1:2", "lonely: {backend: v2}\n"))
    decide = ["rollout", "decide", "--once", "--config", str(config), "--state-database-url", state.control_url,
              "--metrics-url", "http://127.0.0.1:9/metrics"]
    assert run(decide) == ExitStatus.OK
    capsys.readouterr()
    assert run(decide) == ExitStatus.OK
    out = capsys.readouterr().out
    assert "lonely: hold: no evidence could be read" in out
    # the cause, on its own line: what was asked, where, and what happened
    assert ("\n    evidence: the metrics source failed: cannot read http://127.0.0.1:9/metrics: connection refused "
            "(nothing listens there)\n") in out, out


def test_the_mirrored_pairs_latency_is_read_v2_answering_and_v1_answering_the_copies() -> None:
    def key(side: str, backend: str, le: str, tenant: str = "shop") -> str | None:
        return series_key("a", "dualstack_shadow_latency_seconds_bucket",
                          {"tenant": tenant, "side": side, "backend": backend, "le": le}, "shop")

    assert key("primary", "v2", "0.1") == "a|pairv2|le|0.1" and key("shadow", "v1", "+Inf") == "a|pairv1|le|+Inf"
    assert key("shadow", "v2", "0.1") is None and key("primary", "v1", "0.1") is None  # before a flip: not v1's
    assert key("shadow", "v1", "0.1", tenant="other") is None
    counters = {"a|pairv2|le|0.05": 8.0, "a|pairv2|le|0.1": 10.0, "a|pairv2|le|+Inf": 10.0,
                "a|pairv1|le|0.1": 9.0, "a|pairv1|le|+Inf": 10.0}
    s = _slice(deltas(counters, {}), 60.0, 60.0)
    assert s.latency is None and s.shadow_latency is not None  # v1 serves nobody else: only the pairs
    paired = s.shadow_latency
    assert (paired.v2_requests, paired.v1_requests) == (10, 10)
    assert paired.v2_above[paired.bounds.index(0.05)] == 2 and paired.v1_above[paired.bounds.index(0.1)] == 1


async def test_a_shadowed_tenants_pairs_latency_is_scraped_from_a_real_router(
    aiohttp_server: Any, make_router: RouterFactory
) -> None:
    v1, v2 = await aiohttp_server(tenant_app("v1")), await aiohttp_server(tenant_app("v2"))
    router = await make_router(shadow_config(str(v1.make_url("")).rstrip("/"), str(v2.make_url("")).rstrip("/"),
                                             "{sample_rate: 1.0}", backend="v2"))
    metrics_url = str(router.admin.make_url("/metrics"))
    assert set(await tenant_traffic(router.url, "shop", 20)) == {200}
    await wait_until(lambda: router.sample("dualstack_shadow_latency_seconds_count", tenant="shop", side="shadow",
                                           backend="v1") == 20, timeout_s=20)
    s = _slice(deltas(counters_of(await asyncio.to_thread(read_routers, [metrics_url]), "shop"), {}), 60.0, 60.0)
    assert s.shadow_latency is not None and (s.shadow_latency.v2_requests, s.shadow_latency.v1_requests) == (20, 20)
    assert s.v1_shadow == (20, 0) and s.v2_requests[0] == 20

"""The embedded evidence source: the routers' own /metrics, no Prometheus."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controlplane.cli import ExitStatus, run
from controlplane.rollout.embedded import _counts, _delta
from tests.conftest import Database, RouterFactory, routing_yaml
from tests.controlplane.rollout.test_decider import backend, traffic


def test_a_router_restart_counts_from_zero() -> None:
    assert _delta({"v2_ok": 5}, {"v2_ok": 100}, "v2_ok") == 5
    assert _counts({"v2_ok": 90, "v2_errors": 10}, {"v2_ok": 40, "v2_errors": 5}, "v2").events == 5
    assert _counts({"v2_ok": 90, "v2_errors": 10}, {"v2_ok": 40, "v2_errors": 5}, "v2").total == 55


async def test_the_decider_rolls_back_from_the_routers_own_metrics(
    aiohttp_server: Any, make_router: RouterFactory, state: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2 = await aiohttp_server(backend("v1")), await aiohttp_server(backend("v2", failing="sick"))
    yaml = routing_yaml(str(v1.make_url("")).rstrip("/"), str(v2.make_url("")).rstrip("/"),
                        "fine: {backend: v2}\nsick: {backend: v2}\n")
    router = await make_router(yaml, state_database_url=state.app_url)
    decide = ["rollout", "decide", "--once", "--config", str(router.config_path), "--state-database-url",
              state.app_url, "--metrics-url", str(router.admin.make_url("/metrics"))]

    async def once() -> str:
        capsys.readouterr()
        assert await asyncio.to_thread(run, decide) == ExitStatus.OK
        return capsys.readouterr().out

    assert "sick: declared on v2: soak window started" in await once()
    assert "sick: continue" in await once()  # the first snapshot of the soak: nothing counted yet
    assert set(await traffic(router.url, "sick", 200)) == {500}
    assert set(await traffic(router.url, "fine", 200)) == {200}
    out = await once()
    assert "sick: rollback: severe harm" in out and "fine: continue" in out
    for _ in range(100):
        if set(await traffic(router.url, "sick", 5)) == {200}:
            break
        await asyncio.sleep(0.05)
    assert set(await traffic(router.url, "sick", 10)) == {200}  # served by v1 now


async def test_an_unreachable_router_holds(state: Database, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "routing.yaml"
    config.write_text(routing_yaml("http://127.0.0.1:1", "http://127.0.0.1:2", "lonely: {backend: v2}\n"))
    decide = ["rollout", "decide", "--once", "--config", str(config), "--state-database-url", state.app_url,
              "--metrics-url", "http://127.0.0.1:9/metrics"]
    assert run(decide) == ExitStatus.OK
    capsys.readouterr()
    assert run(decide) == ExitStatus.OK
    assert "lonely: hold: no evidence could be read" in capsys.readouterr().out

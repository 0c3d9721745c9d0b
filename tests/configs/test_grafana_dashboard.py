"""Every query of the Grafana dashboard runs without error against a real Prometheus that loads our
rules and scrapes a real router."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from tests.conftest import DEFAULT_TENANTS, REPO, RouterFactory, Upstream, routing_yaml

DASHBOARD = REPO / "configs" / "grafana" / "dualstack.json"
MIRRORED = "mirrored:\n  backend: v2\n  shadow: {sample_rate: 0.1}\n"


def queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def concrete(expr: str) -> str:
    """What Grafana sends: variables replaced by their values."""
    return expr.replace("$tenant", ".*").replace("$__rate_interval", "1m")


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "dualstack-overview"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 8
    assert all(p["targets"] and p["datasource"]["type"] == "prometheus" for p in dashboard["panels"])


async def test_every_query_runs_on_a_real_prometheus(upstreams: dict[str, Upstream], make_router: RouterFactory,
                                                      prometheus: Any) -> None:
    router = await make_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, DEFAULT_TENANTS + MIRRORED))
    async with aiohttp.ClientSession() as session:
        for _ in range(5):
            async with session.get(f"{router.url}/x", headers={"Host": "buatfilm.agentbar.ai"}):
                pass
    base = await prometheus([str(router.admin.make_url("")).split("//", 1)[1].rstrip("/")])
    async with aiohttp.ClientSession() as session:

        async def query(expr: str) -> dict[str, Any]:
            async with session.get(f"{base}/api/v1/query", params={"query": expr}) as response:
                return dict(await response.json())

        for _ in range(100):  # wait for the first scrape of the router
            if (await query("dualstack_requests_total"))["data"]["result"]:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("prometheus never scraped the router")
        for title, expr in queries():
            answer = await query(concrete(expr))
            assert answer["status"] == "success", (title, answer)
        each, counted = (expr for title, expr in queries() if title == "Backend serving each tenant")
        # Per tenant only for the tenants someone watches (here: shadowed); the others are counted.
        served = await query(concrete(each))
        assert {(r["metric"]["tenant"], r["metric"]["backend"]) for r in served["data"]["result"]} == {
            ("mirrored", "v2")}
        served = await query(concrete(counted))
        assert {(r["metric"]["backend"], r["value"][1]) for r in served["data"]["result"]} == {("v1", "1"), ("v2", "2")}

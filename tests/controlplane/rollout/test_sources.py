"""The Prometheus source: a real router scraped by a real Prometheus, read back as per-route slices."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from controlplane.rollout.decide import Memory
from controlplane.rollout.sampling import poisson
from controlplane.rollout.sources import PrometheusSource, Read, tenant_matcher
from controlplane.state.rollouts import Phase, RolloutStore
from controlplane.state.schema import STATE_SCHEMA
from tests.conftest import (
    Database,
    RouterFactory,
    routing_yaml,
    shadow_config,
    signed,
    tenant_app,
    tenant_traffic,
)

STEP_S = 3


# Every request carries it; the notifications must pass the router's check to reach v2.
NOTIFICATION = signed({"order_id": "o-1", "status_code": "200", "gross_amount": "1.00",
                       "transaction_status": "settlement"})


async def test_slices_count_reads_payment_creation_and_notifications_apart_with_v1_beside_them(
    aiohttp_server: Any, make_router: RouterFactory, prometheus: Any, state: Database
) -> None:
    v1, v2 = await aiohttp_server(tenant_app("v1")), await aiohttp_server(tenant_app("v2", failing="slicer"))
    yaml = routing_yaml(str(v1.make_url("")).rstrip("/"), str(v2.make_url("")).rstrip("/"),
                        "slicer: {backend: v2, webhooks: primary}\nolder: {backend: v1}\n")
    router = await make_router(yaml, state_database_url=state.router_url)
    # The decider reads tenants in a rollout: slicer soaks (its own series, at zero before any traffic).
    RolloutStore(state.control_url, STATE_SCHEMA).save("slicer", Phase.SOAKING, datetime.now(UTC), Memory())
    base = await prometheus([str(router.admin.make_url("")).split("//", 1)[1].rstrip("/")])
    source = PrometheusSource(base, lag_s=1.0, step_s=STEP_S)

    async with aiohttp.ClientSession() as session:
        async def send(tenant: str, method: str, path: str) -> None:
            async with session.request(method, f"{router.url}{path}", headers={"Host": f"{tenant}.agentbar.ai"},
                                       json=NOTIFICATION) as response:
                await response.read()

        # v1's tenants are counted from their first request: one before the soak's first slice.
        await send("older", "GET", "/orders/o-2")
        for _ in range(100):
            if source.query('count(dualstack_requests_total{tenant="slicer",route="webhook"})', datetime.now(UTC)) \
                    and source.query('count(dualstack_requests_total{tenant="older"})', datetime.now(UTC)):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(STEP_S)  # so that request is in the sample the first slice starts from
        started = datetime.now(UTC)
        await asyncio.gather(*(send("slicer", "GET", "/orders/o-1") for _ in range(7)),
                             *(send("slicer", "POST", "/payments") for _ in range(3)),
                             *(send("slicer", "POST", "/webhooks/midtrans") for _ in range(2)),
                             *(send("older", "GET", "/orders/o-2") for _ in range(5)))
    for _ in range(100):  # until Prometheus has scraped it all and the slices holding it have ended
        evidence = source.evidence("slicer", started, started.timestamp(), datetime.now(UTC))
        totals = [sum(s.v2_requests[i] for s in evidence.slices) for i in range(3)]
        errors = [sum(s.v2_errors[i] for s in evidence.slices) for i in range(3)]
        v1 = [sum(s.v1_requests[i] for s in evidence.slices) for i in range(3)]
        if sum(totals) >= 12 and sum(v1) >= 5:
            break
        await asyncio.sleep(0.3)
    assert evidence.read_until_s is not None and evidence.slices
    # Exact: raw counter values differenced per router (increase() would extrapolate within each window).
    assert totals == [7, 3, 2] and errors == totals  # v2 fails every request of this tenant
    assert v1 == [5, 0, 0]  # v1 over the same minutes: the tenant still on it
    assert all(s.latency is not None for s in evidence.slices if sum(s.v2_requests[:2]))


async def test_the_mirrored_pairs_latency_is_read_v2_answering_them_and_v1_answering_the_copies(
    aiohttp_server: Any, make_router: RouterFactory, prometheus: Any
) -> None:
    v1, v2 = await aiohttp_server(tenant_app("v1")), await aiohttp_server(tenant_app("v2"))
    router = await make_router(shadow_config(str(v1.make_url("")).rstrip("/"), str(v2.make_url("")).rstrip("/"),
                                             "{sample_rate: 1.0}", backend="v2"))
    base = await prometheus([str(router.admin.make_url("")).split("//", 1)[1].rstrip("/")])
    source = PrometheusSource(base, lag_s=1.0, step_s=STEP_S)
    started = datetime.now(UTC)
    assert set(await tenant_traffic(router.url, "shop", 20)) == {200}
    for _ in range(60):  # until the copies are flushed, scraped, and the slices holding them have ended
        slices = source.evidence("shop", started, started.timestamp(), datetime.now(UTC)).slices
        pairs = [s.shadow_latency for s in slices if s.shadow_latency is not None]
        if sum(p.v1_requests for p in pairs) >= 20:
            break
        await asyncio.sleep(0.3)
    # v1 serves nobody else here: the pairs are the only v1 latency there is, v2's beside it.
    assert sum(p.v1_requests for p in pairs) == sum(p.v2_requests for p in pairs) == 20
    assert all(s.latency is None for s in slices) and sum(s.v1_shadow[0] for s in slices) == 20


def _history(start: int, tenants: dict[str, str], minutes: int) -> str:
    """Reads and writes every 15 s for each tenant on its backend (and a read error now and then on
    v2), with a latency histogram, and shadow comparisons for the first v2 tenant."""
    rng = random.Random(5)
    lines = ["# TYPE dualstack_requests counter", "# TYPE dualstack_request_duration_seconds histogram",
             "# TYPE dualstack_shadow_comparisons counter"]
    for tenant, backend in tenants.items():
        value: dict[str, int] = {}
        for step in range(minutes * 4):
            t = start + step * 15
            for series, mean in ((f'backend="{backend}",code_class="2xx",route="read",tenant="{tenant}"', 4.0),
                                 (f'backend="{backend}",code_class="5xx",route="read",tenant="{tenant}"', 0.2),
                                 (f'backend="{backend}",code_class="2xx",route="write",tenant="{tenant}"', 1.0)):
                value[series] = value.get(series, 0) + poisson(rng, mean)
                lines.append(f"dualstack_requests_total{{{series}}} {value[series]} {t}")
            reads = value[f'backend="{backend}",code_class="2xx",route="read",tenant="{tenant}"']
            for le, share in (("0.1", 0.9), ("1.0", 1.0), ("+Inf", 1.0)):
                lines.append(f'dualstack_request_duration_seconds_bucket{{backend="{backend}",le="{le}",route="read",'
                             f'tenant="{tenant}"}} {round(reads * share)} {t}')
            if tenant == "shop":
                lines.append(f'dualstack_shadow_comparisons_total{{result="match",tenant="shop"}} {step} {t}')
    return "\n".join(sorted(lines, key=lambda line: not line.startswith("#"))) + "\n# EOF\n"


@pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("promtool") is None,
                    reason="prometheus and promtool are needed")
def test_one_reading_for_every_soaking_tenant_gives_each_the_evidence_it_would_get_alone(
    prometheus_on: Callable[[str], str]
) -> None:
    start = (int(time.time()) // 3600 - 3) * 3600
    tenants = {"shop": "v2", "shop-2": "v2", "shop-3": "v2", "other": "v1"}
    source = PrometheusSource(prometheus_on(_history(start, tenants, 30)), lag_s=0.0)
    started = datetime.fromtimestamp(start + 5 * 60, UTC)
    at = datetime.fromtimestamp(start + 20 * 60, UTC)
    # shop-3 is read from a later minute on: its own group of slices
    reads = [Read("shop", started, started.timestamp()), Read("shop-2", started, started.timestamp()),
             Read("shop-3", started, started.timestamp() + 600), Read("gone", started, started.timestamp())]
    alone = {}
    for read in reads:
        before = source.queries
        alone[read.tenant] = source.evidence_for([read], at)[read.tenant]
        assert source.queries - before == (9 if read.after_s == started.timestamp() else 8)  # history: one more
    before = source.queries
    together = source.evidence_for(reads, at)
    # one query per measurement (v2's requests and latency, v1's requests and latency, the shadow
    # comparisons, the two sides' latency of the mirrored pairs, v1's answers to shadow copies) per
    # group of minutes, and one for the histories
    assert source.queries - before == 1 + 8 + 8
    assert together == alone
    assert [len(together[t].slices) for t in ("shop", "shop-2", "shop-3")] == [15, 15, 5]
    shop = together["shop"]
    assert sum(s.v2_requests[0] for s in shop.slices) > 200 and shop.slices[-1].latency is not None
    assert sum(s.v1_requests[0] for s in shop.slices) > 200  # other's, on v1 over the same minutes
    assert sum(s.shadow.matches for s in shop.slices) == 60
    assert not any(s.shadow.matches for s in together["shop-2"].slices)
    assert together["gone"].slices and not any(sum(s.v2_requests) for s in together["gone"].slices)
    assert shop.history is None  # no v1 traffic of its own before the soak


def test_the_tenant_matcher_names_exactly_the_tenants_given() -> None:
    assert tenant_matcher(["shop"]) == 'tenant="shop"'
    hostile = ['x"} or vector(1) #', "a.b|c", "y"]
    matcher = tenant_matcher(hostile)
    assert matcher.startswith('tenant=~"') and matcher.endswith('"')
    inner = matcher[len('tenant=~"'):-1]
    assert not re.search(r'(?<!\\)(?:\\\\)*"', inner)  # no quote ends the PromQL string early
    regex = re.sub(r"\\(.)", r"\1", inner)  # the string's value: the regular expression Prometheus sees
    assert all(re.fullmatch(regex, name) for name in hostile)
    assert not any(re.fullmatch(regex, name) for name in ("x", "a.b", "axb|c", "c", "yy"))

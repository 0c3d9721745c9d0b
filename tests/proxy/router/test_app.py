"""The router end to end on loopback: real upstream servers, the real composition root."""

from __future__ import annotations

import shutil
import subprocess

import aiohttp
import pytest
from yarl import URL

from proxy.router.cardinality import OTHER_TENANTS
from tests.conftest import DEFAULT_TENANTS, RouterFactory, Upstream, routing_yaml


async def get(url: str | URL, **kwargs) -> tuple[int, dict, aiohttp.typedefs.LooseHeaders]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as response:
        return response.status, await response.json(), response.headers


async def test_each_tenant_reaches_its_backend_with_the_router_headers(
    upstreams: dict[str, Upstream], make_router: RouterFactory
) -> None:
    router = await make_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, DEFAULT_TENANTS))
    status, body, headers = await get(URL(f"{router.url}/orders/A%2F1/status?x=%2F1&y=%20", encoded=True),
                                      headers={"Host": "buatfilm.agentbar.ai"})
    assert (status, body) == (200, {"backend": "v1", "tenant": "buatfilm"})
    assert headers["X-Dualstack-Backend"] == "v1"
    seen = upstreams["v1"].seen[-1]
    assert seen.raw_path == "/orders/A%2F1/status?x=%2F1&y=%20"  # path and query forwarded byte for byte
    assert seen.headers["X-Tenant-Slug"] == "buatfilm"
    assert seen.headers["Host"] == "buatfilm.agentbar.ai"
    assert seen.headers["X-Forwarded-For"] == "127.0.0.1"
    assert seen.headers["X-Forwarded-Proto"] == "http"
    assert seen.headers["X-Forwarded-Host"] == "buatfilm.agentbar.ai"
    # the router's request id is returned to the client and wins over the upstream's copy
    assert headers["X-Request-ID"] == seen.headers["X-Request-ID"]
    assert len(headers["X-Request-ID"]) == 32

    status, body, _ = await get(f"{router.url}/health", headers={"Host": "demo.agentbar.ai"})
    assert (status, body["backend"]) == (200, "v2")
    assert upstreams["v2"].seen[-1].headers["X-Tenant-Slug"] == "demo"


async def test_hop_by_hop_headers_never_cross_the_router(
    upstreams: dict[str, Upstream], make_router: RouterFactory
) -> None:
    router = await make_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, DEFAULT_TENANTS))
    _, _, headers = await get(f"{router.url}/", headers={
        "Host": "demo.agentbar.ai", "Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1",
        "Keep-Alive": "timeout=5", "Proxy-Authorization": "Basic eA==", "TE": "trailers",
        "X-Custom": "kept"})
    seen = upstreams["v2"].seen[-1].headers
    assert seen["X-Custom"] == "kept"
    for name in ("X-Secret-Hop", "Keep-Alive", "Proxy-Authorization", "TE"):
        assert name not in seen
    assert headers.get("Connection", "keep-alive").lower() == "keep-alive"  # the router's own


async def test_untrusted_peers_cannot_choose_the_tenant_or_the_request_id(
    upstreams: dict[str, Upstream], make_router: RouterFactory
) -> None:
    # Loopback is not trusted here, so the test client is an ordinary outside client.
    router = await make_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, DEFAULT_TENANTS,
                                            trusted='["10.9.0.0/16"]'))
    status, body, headers = await get(f"{router.url}/x", headers={
        "Host": "buatfilm.agentbar.ai", "X-Tenant-Slug": "demo", "X-Request-ID": "chosen-by-client",
        "X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil"})
    assert (status, body) == (200, {"backend": "v1", "tenant": "buatfilm"})
    seen = upstreams["v1"].seen[-1].headers
    assert seen["X-Tenant-Slug"] == "buatfilm"
    assert seen["X-Request-ID"] != "chosen-by-client" and headers["X-Request-ID"] == seen["X-Request-ID"]
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Forwarded-Host"] == "buatfilm.agentbar.ai"
    assert router.sample("dualstack_untrusted_routing_headers_total") == 1

    # a header alone, from an untrusted peer, names no tenant at all
    status, body, _ = await get(f"{router.url}/x", headers={"Host": "localhost", "X-Tenant-Slug": "demo"})
    assert status == 404 and body["error"] == "unknown_tenant"
    assert len(upstreams["v2"].seen) == 0


async def test_trusted_proxies_set_tenant_request_id_and_forwarded_chain(
    upstreams: dict[str, Upstream], make_router: RouterFactory
) -> None:
    router = await make_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, DEFAULT_TENANTS))
    _, body, headers = await get(f"{router.url}/x", headers={
        "Host": "buatfilm.agentbar.ai", "X-Tenant-Slug": "demo", "X-Request-ID": "nginx-req-1",
        "X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"})
    assert body == {"backend": "v2", "tenant": "demo"}
    seen = upstreams["v2"].seen[-1].headers
    assert seen["X-Request-ID"] == headers["X-Request-ID"] == "nginx-req-1"
    assert seen["X-Forwarded-For"] == "198.51.100.7, 127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "https"
    # a malformed id from a trusted peer is replaced, never passed on
    _, _, headers = await get(f"{router.url}/x", headers={"Host": "demo.agentbar.ai",
                                                           "X-Request-ID": "bad id\twith spaces"})
    assert headers["X-Request-ID"] != "bad id\twith spaces"


@pytest.mark.parametrize(
    ("host", "query", "message"),
    [
        ("nobody.agentbar.ai", "", "no tenant 'nobody' is configured"),
        ("www.agentbar.ai", "", "this request names no tenant (host, X-Tenant-Slug or ?tenant=)"),
        ("localhost", "?tenant=nobody", "no tenant 'nobody' is configured"),
        ("localhost", "?tenant=..%2Fetc", "no tenant '../etc' is configured"),
        ("nobody.agentbar.ai", "?tenant=buatfilm", "no tenant 'nobody' is configured"),
    ],
)
async def test_unknown_or_missing_tenants_get_404_json_and_never_reach_a_backend(
    upstreams: dict[str, Upstream], make_router: RouterFactory, host: str, query: str, message: str
) -> None:
    router = await make_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, DEFAULT_TENANTS))
    status, body, headers = await get(f"{router.url}/payment/create{query}", headers={"Host": host})
    assert status == 404
    assert body == {"success": False, "error": "unknown_tenant", "message": message,
                    "requestId": headers["X-Request-ID"]}
    assert upstreams["v1"].seen == [] and upstreams["v2"].seen == []
    assert router.sample("dualstack_requests_total", tenant="unknown", backend="none",
                         code_class="4xx") == 1


async def test_query_fallback_routes_when_the_host_names_no_tenant(
    upstreams: dict[str, Upstream], make_router: RouterFactory
) -> None:
    router = await make_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, DEFAULT_TENANTS))
    status, body, _ = await get(f"{router.url}/health?tenant=demo", headers={"Host": "funnel.agentbar.ai"})
    assert (status, body["tenant"]) == (200, "demo")


async def test_metrics_after_known_traffic(upstreams: dict[str, Upstream], make_router: RouterFactory) -> None:
    router = await make_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, DEFAULT_TENANTS))
    for _ in range(3):
        await get(f"{router.url}/a", headers={"Host": "buatfilm.agentbar.ai"})
    for _ in range(2):
        await get(f"{router.url}/b", headers={"Host": "demo.agentbar.ai"})
    await get(f"{router.url}/c", headers={"Host": "x.agentbar.ai"})
    assert router.sample("dualstack_requests_total", tenant="buatfilm", backend="v1", code_class="2xx") == 3
    assert router.sample("dualstack_requests_total", tenant="demo", backend="v2", code_class="2xx") == 2
    # Neither tenant is in a rollout or shadowed: their latency is observed without their name.
    assert router.sample("dualstack_request_duration_seconds_count", tenant=OTHER_TENANTS, backend="v1") == 3
    assert router.sample("dualstack_request_duration_seconds_sum", tenant=OTHER_TENANTS, backend="v2") > 0
    assert router.sample("dualstack_request_duration_seconds_count", tenant="buatfilm", backend="v1") == 0
    # Which backend serves each: counted; per tenant only for tenants in a rollout, shadowed or moved.
    assert router.sample("dualstack_tenants", backend="v1") == 1
    assert router.sample("dualstack_tenants", backend="v2") == 1
    assert router.registry.get_sample_value("dualstack_tenant_backend", {"tenant": "buatfilm", "backend": "v1"}) is None
    assert router.sample("dualstack_config_generation") == 1
    assert router.sample("dualstack_config_last_reload_success") == 1
    assert router.sample("dualstack_config_last_reload_timestamp_seconds") > 1.7e9

    async with aiohttp.ClientSession() as session:
        async with session.get(router.admin.make_url("/metrics")) as response:
            text = await response.text()
        async with session.get(router.admin.make_url("/routes")) as response:
            routes = await response.json()
        async with session.get(router.admin.make_url("/readyz")) as response:
            assert response.status == 200
        async with session.get(router.admin.make_url("/healthz")) as response:
            assert response.status == 200
    assert 'dualstack_requests_total{backend="v1",code_class="2xx",route="read",tenant="buatfilm"} 3.0' in text
    assert routes["tenants"]["buatfilm"] == {
        "backend": "v1", "declared_backend": "v1", "override": None, "refused_lock": None,
        "upstream": upstreams["v1"].url,
        "hosts": ["buatfilm.agentbar.ai", "shop.example.com"]}  # each host once
    assert routes["last_reload"] == {"ok": True, "at_s": routes["last_reload"]["at_s"], "issues": []}
    if shutil.which("promtool"):
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                               check=False)
        assert check.returncode == 0, check.stdout + check.stderr


async def test_no_tenant_series_before_traffic_outside_a_rollout(
    upstreams: dict[str, Upstream], make_router: RouterFactory
) -> None:
    """Zero series are for tenants in a rollout only (tests/proxy/router/test_cardinality.py): at
    10,000 tenants the same for everyone was 2.2 million series."""
    router = await make_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, DEFAULT_TENANTS))
    names = {s.name for metric in router.registry.collect() for s in metric.samples}
    assert not names & {"dualstack_requests_total", "dualstack_request_duration_seconds_count"}

"""Shadow traffic in the router: real primary and shadow servers with deliberately different answers."""

from __future__ import annotations

import asyncio
import itertools
import textwrap
from typing import Any

import aiohttp
from aiohttp import web

from proxy import keys
from tests.conftest import RouterFactory, wait_until

counter = itertools.count()


def status_app(name: str, seen: list[dict[str, str]], *, amount: int = 150000, status: str = "PAID",
               noisy: bool = False, gate: asyncio.Event | None = None) -> web.Application:
    async def order(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        if gate is not None:
            await gate.wait()
        body: dict[str, Any] = {"success": True, "order": {"id": request.match_info["id"], "status": status,
                                                           "totalAmount": amount}}
        if noisy:
            body["generatedAt"] = next(counter)  # differs on every answer, whichever backend
        return web.json_response(body)

    async def create(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"success": True, "paymentUrl": f"https://{name}/pay", "token": f"{name}-token"})

    app = web.Application()
    app.router.add_get("/orders/{id}/status", order)
    app.router.add_post("/payment/create", create)
    app.router.add_get("/admin/stats", create)
    return app


def config(v1: str, v2: str, shadow: str, *, backend: str = "v1", limits: str = "") -> str:
    return textwrap.dedent(f"""\
        upstreams:
          v1: {{url: "{v1}"}}
          v2: {{url: "{v2}"}}
        base_domain: agentbar.ai
        {limits}
        tenants:
          shop:
            backend: {backend}
            shadow: {shadow}
        """)


async def start(aiohttp_server: Any, primary: web.Application, shadow: web.Application) -> tuple[str, str]:
    p, s = await aiohttp_server(primary), await aiohttp_server(shadow)
    return str(p.make_url("")).rstrip("/"), str(s.make_url("")).rstrip("/")


async def get(router_url: str, path: str, **headers: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(
        f"{router_url}{path}", headers={"Host": "shop.agentbar.ai", **headers}
    ) as response:
        return response.status, await response.json()


async def test_differences_are_found_and_attributed_to_endpoint_and_field(
    aiohttp_server: Any, make_router: RouterFactory
) -> None:
    seen_v1: list[dict[str, str]] = []
    seen_v2: list[dict[str, str]] = []
    v1, v2 = await start(aiohttp_server, status_app("v1", seen_v1),
                         status_app("v2", seen_v2, amount=150001, status="paid"))
    router = await make_router(config(v1, v2, '{sample_rate: 1.0, case_insensitive: ["$.order.status"], '
                                              'noise_sample_rate: 0}'))
    for order in ("A1", "B2", "C3"):
        status, body = await get(router.url, f"/orders/{order}/status", **{"X-Dualstack-Shadow": "1"})
        assert (status, body["order"]["totalAmount"]) == (200, 150000)  # the primary's answer, untouched
    endpoint = "GET /orders/{id}/status"
    await wait_until(lambda: router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=endpoint,
                                           result="mismatch") == 3)
    assert router.sample("dualstack_shadow_requests_total", tenant="shop", result="sent") == 3
    mirror = router.app[keys.MIRROR]
    assert {tuple((d.path, d.kind, d.primary, d.shadow) for d in m.differences) for m in mirror.recent} == {
        (("$.order.totalAmount", "value_changed", 150000, 150001),)}  # status differs only in case: declared
    # Shadow copies are marked and carry the primary's request id; a client's marker never passes.
    assert all("X-Dualstack-Shadow" not in h for h in seen_v1)
    assert all(h["X-Dualstack-Shadow"] == "1" for h in seen_v2)
    assert {h["X-Request-ID"] for h in seen_v1} == {h["X-Request-ID"] for h in seen_v2}
    assert {m.request_id for m in mirror.recent} == {h["X-Request-ID"] for h in seen_v1}
    assert router.sample("dualstack_shadow_latency_seconds_count", tenant="shop", side="shadow") == 3


async def test_noise_learned_from_the_primary_is_not_a_mismatch(aiohttp_server: Any,
                                                                make_router: RouterFactory) -> None:
    v1, v2 = await start(aiohttp_server, status_app("v1", [], noisy=True), status_app("v2", [], noisy=True))
    router = await make_router(config(v1, v2, "{noise_sample_rate: 1.0}"))
    for order in ("A1", "B2"):
        await get(router.url, f"/orders/{order}/status")
    endpoint = "GET /orders/{id}/status"
    await wait_until(lambda: router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=endpoint,
                                           result="noise") == 2)
    assert router.app[keys.MIRROR].noise[("shop", endpoint)] == {"$.generatedAt"}
    assert router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=endpoint,
                         result="mismatch") == 0


async def test_a_hung_shadow_never_holds_the_primary(aiohttp_server: Any, make_router: RouterFactory) -> None:
    gate = asyncio.Event()
    shadow_seen: list[dict[str, str]] = []
    v1, v2 = await start(aiohttp_server, status_app("v1", []), status_app("v2", shadow_seen, gate=gate))
    router = await make_router(config(v1, v2, "{noise_sample_rate: 0}",
                                      limits="shadow: {queue_size: 5, concurrency: 2, timeout_s: 30}"))
    # Every primary answer arrives while the shadow has answered nothing at all.
    results = await asyncio.gather(*(get(router.url, f"/orders/O{i}/status") for i in range(40)))
    assert [status for status, _ in results] == [200] * 40
    assert not gate.is_set()
    await wait_until(lambda: len(shadow_seen) >= 1)  # two copies in flight, pipelined: v2 is on the first
    dropped = router.sample("dualstack_shadow_dropped_total", tenant="shop", reason="queue_full")
    assert 40 - 2 - 5 <= dropped <= 40 - 5  # at most 5 wait in the queue (+2 in flight); the rest dropped
    gate.set()
    # Every copy is accounted for: sent, or dropped and counted with its reason.
    await wait_until(lambda: router.sample("dualstack_shadow_requests_total", tenant="shop", result="sent")
                     == 40 - dropped)


async def test_slow_and_dead_shadows_are_counted_not_felt(aiohttp_server: Any, make_router: RouterFactory) -> None:
    gate = asyncio.Event()
    v1, v2 = await start(aiohttp_server, status_app("v1", []), status_app("v2", [], gate=gate))
    router = await make_router(config(v1, v2, "{noise_sample_rate: 0}", limits="shadow: {timeout_s: 0.1}"))
    assert (await get(router.url, "/orders/S1/status"))[0] == 200
    await wait_until(lambda: router.sample("dualstack_shadow_requests_total", tenant="shop", result="timeout") == 1)
    gate.set()
    dead = await make_router(config(v1, "http://127.0.0.1:9", "{noise_sample_rate: 0}"))
    assert (await get(dead.url, "/orders/S2/status"))[0] == 200
    await wait_until(lambda: dead.sample("dualstack_shadow_requests_total", tenant="shop", result="error") == 1)
    # Right after a refused connection, copies fail at once (counted) without a new attempt each.
    assert (await get(dead.url, "/orders/S3/status"))[0] == 200
    await wait_until(lambda: dead.sample("dualstack_shadow_requests_total", tenant="shop", result="error") == 2)


async def test_writes_are_mirrored_only_to_v2_and_admin_never(aiohttp_server: Any,
                                                             make_router: RouterFactory) -> None:
    seen_v1: list[dict[str, str]] = []
    seen_v2: list[dict[str, str]] = []
    v1, v2 = await start(aiohttp_server, status_app("v1", seen_v1), status_app("v2", seen_v2))
    router = await make_router(config(v1, v2, "{noise_sample_rate: 0}"))
    async with aiohttp.ClientSession() as session:
        for path in ("/payment/create", "/admin/stats"):
            method = "POST" if path.startswith("/payment") else "GET"
            async with session.request(method, f"{router.url}{path}", json={"orderId": "W1"} if method == "POST"
                                       else None, headers={"Host": "shop.agentbar.ai"}) as response:
                assert response.status == 200
    await wait_until(lambda: router.sample("dualstack_shadow_comparisons_total", tenant="shop",
                                           endpoint="POST /payment/create", result="match") == 1)
    assert [h.get("X-Dualstack-Shadow") for h in seen_v2] == ["1"]  # the create ran dry on v2; no admin copy
    assert router.sample("dualstack_shadow_skipped_total", tenant="shop", reason="admin") == 1
    # After the flip to v2, v1 is the shadow: reads are still compared, writes are not sent to v1.
    flipped = await make_router(config(v1, v2, "{noise_sample_rate: 0}", backend="v2"))
    before = len(seen_v1)
    async with aiohttp.ClientSession() as session, session.post(
        f"{flipped.url}/payment/create", json={"orderId": "W2"}, headers={"Host": "shop.agentbar.ai"}
    ) as response:
        assert response.status == 200
    assert flipped.sample("dualstack_shadow_skipped_total", tenant="shop", reason="write_to_v1") == 1
    await get(flipped.url, "/orders/R1/status")
    await wait_until(lambda: len(seen_v1) == before + 1)


async def test_large_bodies_are_not_mirrored(aiohttp_server: Any, make_router: RouterFactory) -> None:
    v1, v2 = await start(aiohttp_server, status_app("v1", []), status_app("v2", []))
    router = await make_router(config(v1, v2, "{max_body_bytes: 10}"))
    async with aiohttp.ClientSession() as session, session.post(
        f"{router.url}/payment/create", json={"orderId": "a-long-enough-order-id"},
        headers={"Host": "shop.agentbar.ai"}
    ) as response:
        assert response.status == 200
    assert router.sample("dualstack_shadow_dropped_total", tenant="shop", reason="body_too_large") == 1


async def test_a_mirrored_body_larger_than_the_streaming_threshold_reaches_both(
    aiohttp_server: Any, make_router: RouterFactory
) -> None:
    sizes: dict[str, list[int]] = {"v1": [], "v2": []}

    def sink(name: str) -> web.Application:
        async def create(request: web.Request) -> web.Response:
            sizes[name].append(len(await request.read()))
            return web.json_response({"success": True})

        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_post("/payment/create", create)
        return app

    v1, v2 = await start(aiohttp_server, sink("v1"), sink("v2"))
    router = await make_router(config(v1, v2, "{max_body_bytes: 300000, noise_sample_rate: 0}"))
    body = b"x" * 200_000  # above the 64 KiB the router otherwise streams
    async with aiohttp.ClientSession() as session, session.post(
        f"{router.url}/payment/create", data=body, headers={"Host": "shop.agentbar.ai"}
    ) as response:
        assert response.status == 200
    await wait_until(lambda: sizes["v2"] == [200_000])
    assert sizes["v1"] == [200_000]

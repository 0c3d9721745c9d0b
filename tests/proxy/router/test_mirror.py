"""Shadow traffic in the router: real primary and shadow servers with deliberately different answers."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import generate_latest

from proxy.router import keys
from tests.conftest import RouterFactory, shadow_config, start_pair, wait_until

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
    v1, v2 = await start_pair(aiohttp_server, status_app("v1", seen_v1),
                         status_app("v2", seen_v2, amount=150001, status="paid"))
    router = await make_router(shadow_config(v1, v2, '{sample_rate: 1.0, case_insensitive: ["$.order.status"], '
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
    assert router.sample("dualstack_shadow_latency_seconds_count", tenant="shop", side="shadow", backend="v2") == 3
    assert router.sample("dualstack_shadow_latency_seconds_count", tenant="shop", side="primary", backend="v1") == 3
    # What each side answered to the copies, by backend: the shadow side's answers are the concurrent
    # baseline the decider reads (controlplane/rollout/sources.py).
    assert router.sample("dualstack_shadow_answers_total", tenant="shop", side="shadow", backend="v2",
                         code_class="2xx") == 3
    assert router.sample("dualstack_shadow_answers_total", tenant="shop", side="primary", backend="v1",
                         code_class="2xx") == 3


async def test_noise_learned_from_the_primary_is_not_a_mismatch(aiohttp_server: Any,
                                                                make_router: RouterFactory) -> None:
    v1, v2 = await start_pair(aiohttp_server, status_app("v1", [], noisy=True), status_app("v2", [], noisy=True))
    router = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 1.0}"))
    for order in ("A1", "B2"):
        await get(router.url, f"/orders/{order}/status")
    endpoint = "GET /orders/{id}/status"
    await wait_until(lambda: router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=endpoint,
                                           result="noise") == 2)
    assert router.app[keys.MIRROR].noise.learned("shop", endpoint, frozenset()) == {"$.generatedAt"}
    assert router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=endpoint,
                         result="mismatch") == 0


async def test_a_hung_shadow_never_holds_the_primary(aiohttp_server: Any, make_router: RouterFactory) -> None:
    gate = asyncio.Event()
    shadow_seen: list[dict[str, str]] = []
    v1, v2 = await start_pair(aiohttp_server, status_app("v1", []), status_app("v2", shadow_seen, gate=gate))
    router = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 0}",
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
    v1, v2 = await start_pair(aiohttp_server, status_app("v1", []), status_app("v2", [], gate=gate))
    router = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 0}", limits="shadow: {timeout_s: 0.1}"))
    assert (await get(router.url, "/orders/S1/status"))[0] == 200
    await wait_until(lambda: router.sample("dualstack_shadow_requests_total", tenant="shop", result="timeout") == 1)
    gate.set()
    dead = await make_router(shadow_config(v1, "http://127.0.0.1:9", "{noise_sample_rate: 0}"))
    assert (await get(dead.url, "/orders/S2/status"))[0] == 200
    await wait_until(lambda: dead.sample("dualstack_shadow_requests_total", tenant="shop", result="error") == 1)
    # Right after a refused connection, copies fail at once (counted) without a new attempt each.
    assert (await get(dead.url, "/orders/S3/status"))[0] == 200
    await wait_until(lambda: dead.sample("dualstack_shadow_requests_total", tenant="shop", result="error") == 2)


async def test_writes_are_mirrored_only_to_v2_and_admin_never(aiohttp_server: Any,
                                                             make_router: RouterFactory) -> None:
    seen_v1: list[dict[str, str]] = []
    seen_v2: list[dict[str, str]] = []
    v1, v2 = await start_pair(aiohttp_server, status_app("v1", seen_v1), status_app("v2", seen_v2))
    router = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 0}"))
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
    flipped = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 0}", backend="v2"))
    before = len(seen_v1)
    async with aiohttp.ClientSession() as session, session.post(
        f"{flipped.url}/payment/create", json={"orderId": "W2"}, headers={"Host": "shop.agentbar.ai"}
    ) as response:
        assert response.status == 200
    assert flipped.sample("dualstack_shadow_skipped_total", tenant="shop", reason="write_to_v1") == 1
    await get(flipped.url, "/orders/R1/status")
    await wait_until(lambda: len(seen_v1) == before + 1)


async def test_large_bodies_are_not_mirrored(aiohttp_server: Any, make_router: RouterFactory) -> None:
    v1, v2 = await start_pair(aiohttp_server, status_app("v1", []), status_app("v2", []))
    router = await make_router(shadow_config(v1, v2, "{max_body_bytes: 10}"))
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

    v1, v2 = await start_pair(aiohttp_server, sink("v1"), sink("v2"))
    router = await make_router(shadow_config(v1, v2, "{max_body_bytes: 300000, noise_sample_rate: 0}"))
    body = b"x" * 200_000  # above the 64 KiB the router otherwise streams
    async with aiohttp.ClientSession() as session, session.post(
        f"{router.url}/payment/create", data=body, headers={"Host": "shop.agentbar.ai"}
    ) as response:
        assert response.status == 200
    await wait_until(lambda: sizes["v2"] == [200_000])
    assert sizes["v1"] == [200_000]


def order_app(statuses: list[str], seen: list[dict[str, str]] | None = None) -> web.Application:
    """Answers each read with the next status of `statuses` (the last one repeats)."""
    async def order(request: web.Request) -> web.Response:
        if seen is not None:
            seen.append(dict(request.headers))
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        return web.json_response({"success": True, "order": {"id": request.match_info["id"], "status": status}})

    app = web.Application()
    app.router.add_get("/orders/{id}/status", order)
    return app


ORDER_READ = "GET /orders/{id}/status"


async def test_a_state_field_is_never_learned_as_noise(aiohttp_server: Any, make_router: RouterFactory) -> None:
    # v1's status changes between every two reads; v2 spells it its own way. By the rates alone the
    # status would be noise (the primary differs from itself as often as from v2): it is state.
    v1, v2 = await start_pair(aiohttp_server, order_app(["pending", "settlement"] * 50),
                              order_app(["PENDING_PAYMENT"]))
    router = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 1.0}"))
    for i in range(6):
        await get(router.url, f"/orders/S{i}/status")
    await wait_until(lambda: router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=ORDER_READ,
                                           result="mismatch") == 6)
    assert router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=ORDER_READ,
                         result="noise") == 0
    spec = router.app[keys.STATE].table.routes["shop"].shadow
    assert "$.order.status" in spec.state_fields
    assert router.app[keys.MIRROR].noise.learned("shop", ORDER_READ, spec.state_fields) == set()


async def test_one_race_between_primary_reads_does_not_hide_every_later_difference(
    aiohttp_server: Any, make_router: RouterFactory
) -> None:
    # The order is paid between the two primary reads of the first request, once; v2 spells the
    # status differently on every answer. Even with status not declared as state, it is no noise.
    v1, v2 = await start_pair(aiohttp_server, order_app(["pending", "paid", "pending"]),
                              order_app(["PENDING_PAYMENT"]))
    router = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 1.0, state_fields: []}"))
    for i in range(8):
        await get(router.url, f"/orders/R{i}/status")
    await wait_until(lambda: router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=ORDER_READ,
                                           result="mismatch") + router.sample(
        "dualstack_shadow_comparisons_total", tenant="shop", endpoint=ORDER_READ, result="noise") == 8)
    assert router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=ORDER_READ,
                         result="mismatch") >= 7  # at most the first, while 1 of 1 primary pairs differed


def replicating_app(never: set[str], seen: list[str]) -> web.Application:
    """v2 behind the follow sync: an order is 404 the first time it is asked for, then found."""
    asked: set[str] = set()

    async def order(request: web.Request) -> web.Response:
        order_id = request.match_info["id"]
        seen.append(order_id)
        if order_id in never or order_id not in asked:
            asked.add(order_id)
            return web.json_response({"success": False, "message": "Order not found"}, status=404)
        return web.json_response({"success": True, "order": {"id": order_id, "status": "pending"}})

    app = web.Application()
    app.router.add_get("/orders/{id}/status", order)
    return app


async def test_an_order_not_replicated_yet_is_confirmed_by_asking_again(
    aiohttp_server: Any, make_router: RouterFactory
) -> None:
    seen: list[str] = []
    v1, v2 = await start_pair(aiohttp_server, order_app(["pending"]), replicating_app({"GONE"}, seen))
    router = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 0, not_replicated_recheck_s: 0.05}"))
    assert (await get(router.url, "/orders/NEW/status"))[0] == 200
    await wait_until(lambda: router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=ORDER_READ,
                                           result="not_replicated") == 1)
    assert seen == ["NEW", "NEW"]  # asked once more, after the delay
    assert router.sample("dualstack_shadow_requests_total", tenant="shop", result="recheck") == 1
    # Still missing when asked again: a real mismatch.
    assert (await get(router.url, "/orders/GONE/status"))[0] == 200
    await wait_until(lambda: router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=ORDER_READ,
                                           result="mismatch") == 1)
    assert seen == ["NEW", "NEW", "GONE", "GONE"]
    first = router.app[keys.MIRROR].recent[-1].differences[0]
    assert (first.path, first.kind) == ("status", "status")
    assert router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=ORDER_READ,
                         result="not_replicated") == 1


def etag_app(seen: list[dict[str, str]], etag: str) -> web.Application:
    """Express-like: 304 to a matching If-None-Match (the v2 stand-in answers 304 to any)."""
    async def order(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        given = request.headers.get("If-None-Match")
        if given is not None and (given == etag or etag == "*"):
            return web.Response(status=304, headers={"ETag": given})
        return web.json_response({"success": True, "order": {"id": request.match_info["id"], "status": "pending"}},
                                 headers={"ETag": etag})

    app = web.Application()
    app.router.add_get("/orders/{id}/status", order)
    return app


async def test_conditional_requests_are_compared_in_full_and_a_304_is_skipped(
    aiohttp_server: Any, make_router: RouterFactory
) -> None:
    seen_v1: list[dict[str, str]] = []
    seen_v2: list[dict[str, str]] = []
    v1, v2 = await start_pair(aiohttp_server, etag_app(seen_v1, '"v1-etag"'), etag_app(seen_v2, "*"))
    router = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 1.0}"))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{router.url}/orders/E1/status", headers={
                "Host": "shop.agentbar.ai", "If-None-Match": '"v1-etag"'}) as response:
            assert response.status == 304  # the client's conditional request is the primary's business
        assert router.sample("dualstack_shadow_skipped_total", tenant="shop", reason="primary_not_modified") == 1
        async with session.get(f"{router.url}/orders/E2/status", headers={
                "Host": "shop.agentbar.ai", "If-None-Match": '"stale"', "If-Modified-Since": "x"}) as response:
            assert response.status == 200
    await wait_until(lambda: router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=ORDER_READ,
                                           result="match") == 1)
    assert len(seen_v2) == 1 and "If-None-Match" not in seen_v2[0] and "If-Modified-Since" not in seen_v2[0]
    assert "If-None-Match" not in seen_v1[-1]  # the primary asked again for noise: in full too
    assert router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=ORDER_READ,
                         result="mismatch") == 0


def holding(orders: set[str], copies: list[str]) -> web.Application:
    """A backend that answers a status read only for the orders it holds, 404 otherwise (as v1 and v2 do);
    `copies`: the order ids of the shadow copies it was sent."""
    async def order(request: web.Request) -> web.Response:
        order_id = request.match_info["id"]
        if "X-Dualstack-Shadow" in request.headers:
            copies.append(order_id)
        if order_id not in orders:
            return web.json_response({"success": False, "error": "Order not found"}, status=404)
        return web.json_response({"success": True, "order": {"id": order_id, "status": "PAID"}})

    app = web.Application()
    app.router.add_get("/orders/{id}/status", order)
    return app


async def test_junk_the_primary_refused_is_not_compared_and_no_path_becomes_a_label(
        aiohttp_server: Any, make_router: RouterFactory) -> None:
    seen_v2: list[str] = []
    # v1 took an order under an id v2 cannot hold (v1 stores whatever a client sends)
    v1, v2 = await start_pair(aiohttp_server, holding({"OK1", "Order 12"}, []), holding({"OK1"}, seen_v2))
    router = await make_router(shadow_config(v1, v2, "{sample_rate: 1.0, noise_sample_rate: 0}"))
    junk_ids = ("/orders/a%2Fb1/status", "/orders/A%00/status", "/orders/%C3%A9/status",
                "/orders/" + "x" * 51 + "/status")
    unknown = ("/Orders/A%00/status", "/wp-login.php", "/.env", "/orders/12/status/more")
    async with aiohttp.ClientSession() as session:
        for path in (*junk_ids, *unknown, "/orders/Order%2012/status", "/orders/OK1/status"):
            async with session.get(f"{router.url}{path}", headers={"Host": "shop.agentbar.ai"}) as response:
                await response.read()
    assert router.sample("dualstack_shadow_skipped_total", tenant="shop", reason="not_an_order_id") == len(junk_ids)
    assert router.sample("dualstack_shadow_skipped_total", tenant="shop", reason="unknown_route") == len(unknown)
    read = "GET /orders/{id}/status"
    await wait_until(lambda: router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=read,
                                           result="match") == 1)
    # The order v1 served under an id v2 cannot hold is mirrored: v2's 404 to it is asked again after the
    # next sync, then counted (test_handover.py), so the customer v2 would fail shows.
    assert sorted(seen_v2) == ["OK1", "Order 12"]  # and no junk copy was sent (the router's fallback for a
    # status read v1 does not know asks v2 for real, test_handover.py: not a copy)
    assert router.sample("dualstack_shadow_requests_total", tenant="shop", result="sent") == 2
    exposed = generate_latest(router.registry).decode()
    assert not any(word in exposed for word in ("wp-login", ".env", "a/b1", "more", "Orders"))

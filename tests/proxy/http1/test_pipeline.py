"""Shadow copies over pipelined connections: each answer goes to its own copy, whatever the backend does."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp
from aiohttp import web

from proxy.router import keys
from tests.conftest import RouterFactory, shadow_config, start_pair, wait_until


def order_app(*, close_every: int = 0, slow_ids: frozenset[str] = frozenset()) -> web.Application:
    """Answers each order with its own id and amount; optionally closes every Nth connection use."""
    served = itertools.count(1)

    async def order(request: web.Request) -> web.Response:
        order_id = request.match_info["id"]
        if order_id in slow_ids:
            await asyncio.sleep(0.2)
        headers = {"Connection": "close"} if close_every and next(served) % close_every == 0 else {}
        body = {"success": True, "order": {"id": order_id, "totalAmount": int(order_id[1:])}}
        return web.Response(text=json.dumps(body), content_type="application/json", headers=headers)

    app = web.Application()
    app.router.add_get("/orders/{id}/status", order)
    return app


async def burst(router_url: str, count: int) -> list[int]:
    async with aiohttp.ClientSession() as session:
        async def one(i: int) -> int:
            async with session.get(f"{router_url}/orders/O{i}/status",
                                   headers={"Host": "shop.agentbar.ai"}) as response:
                await response.read()
                return response.status

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def test_many_copies_in_flight_each_get_their_own_answer(aiohttp_server: Any,
                                                               make_router: RouterFactory) -> None:
    # Slow answers in the middle of the stream: later copies on the same connection wait their turn.
    v1, v2 = await start_pair(aiohttp_server, order_app(), order_app(slow_ids=frozenset({"O7", "O77"})))
    router = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 0}"))
    assert await burst(router.url, 300) == [200] * 300
    endpoint = "GET /orders/{id}/status"
    await wait_until(lambda: router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=endpoint,
                                           result="match") == 300)
    assert router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint=endpoint,
                         result="mismatch") == 0
    assert list(router.app[keys.MIRROR].recent) == []


async def test_a_backend_that_closes_connections_loses_no_copy(aiohttp_server: Any,
                                                               make_router: RouterFactory) -> None:
    # Every 7th answer says `Connection: close`: what was pipelined behind it goes out again.
    v1, v2 = await start_pair(aiohttp_server, order_app(), order_app(close_every=7))
    router = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 0}"))
    assert await burst(router.url, 200) == [200] * 200
    await wait_until(lambda: router.sample("dualstack_shadow_requests_total", tenant="shop", result="sent") == 200)
    assert router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint="GET /orders/{id}/status",
                         result="match") == 200
    assert router.sample("dualstack_shadow_requests_total", tenant="shop", result="error") == 0


async def test_head_requests_are_not_mirrored(aiohttp_server: Any, make_router: RouterFactory) -> None:
    v1, v2 = await start_pair(aiohttp_server, order_app(), order_app())
    router = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 0}"))
    async with aiohttp.ClientSession() as session, session.head(
            f"{router.url}/orders/O1/status", headers={"Host": "shop.agentbar.ai"}) as response:
        assert response.status == 200
    assert router.sample("dualstack_shadow_skipped_total", tenant="shop", reason="head") == 1


async def test_shadow_bounds_follow_a_reloaded_routing_file(aiohttp_server: Any, make_router: RouterFactory) -> None:
    gate = asyncio.Event()

    async def hung(request: web.Request) -> web.Response:
        await gate.wait()
        return web.json_response({"success": True, "order": {"id": request.match_info["id"]}})

    shadow = web.Application()
    shadow.router.add_get("/orders/{id}/status", hung)
    v1, v2 = await start_pair(aiohttp_server, order_app(), shadow)
    tight = "shadow: {queue_size: 1, concurrency: 1, timeout_s: 30}"
    router = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 0}", limits=tight))
    assert await burst(router.url, 20) == [200] * 20
    dropped = router.sample("dualstack_shadow_dropped_total", tenant="shop", reason="queue_full")
    assert dropped >= 18  # one in flight, one waiting
    generation = router.sample("dualstack_config_generation")
    router.config_path.write_text(shadow_config(v1, v2, "{noise_sample_rate: 0}",
                                         limits="shadow: {queue_size: 100, concurrency: 1, timeout_s: 30}"))
    await wait_until(lambda: router.sample("dualstack_config_generation") > generation)
    assert await burst(router.url, 20) == [200] * 20
    assert router.sample("dualstack_shadow_dropped_total", tenant="shop", reason="queue_full") == dropped
    gate.set()
    await wait_until(lambda: router.sample("dualstack_shadow_requests_total", tenant="shop", result="sent")
                     == 40 - dropped)


async def test_pipelined_writes_keep_each_body_with_its_request(aiohttp_server: Any,
                                                                make_router: RouterFactory) -> None:
    def create_app() -> web.Application:
        async def create(request: web.Request) -> web.Response:
            body = await request.json()
            return web.json_response({"success": True, "orderId": body["orderId"], "amount": body["amount"]})

        app = web.Application()
        app.router.add_post("/payment/create", create)
        return app

    v1, v2 = await start_pair(aiohttp_server, create_app(), create_app())
    router = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 0}"))
    async with aiohttp.ClientSession() as session:
        async def one(i: int) -> int:
            # Bodies of different lengths, so a framing slip would shift every answer after it.
            body = {"orderId": f"W{i}", "amount": 1000 + i, "pad": "x" * (i % 17)}
            async with session.post(f"{router.url}/payment/create", json=body,
                                    headers={"Host": "shop.agentbar.ai"}) as response:
                return (await response.json())["amount"]

        assert await asyncio.gather(*(one(i) for i in range(150))) == [1000 + i for i in range(150)]
    await wait_until(lambda: router.sample("dualstack_shadow_comparisons_total", tenant="shop",
                                           endpoint="POST /payment/create", result="match") == 150)


async def test_an_answer_too_large_to_compare_is_an_error_never_a_partial_comparison(
    aiohttp_server: Any, make_router: RouterFactory
) -> None:
    async def huge(request: web.Request) -> web.Response:
        return web.json_response({"success": True, "pad": "x" * (1536 * 1024)})

    shadow = web.Application()
    shadow.router.add_get("/orders/{id}/status", huge)
    v1, v2 = await start_pair(aiohttp_server, order_app(), shadow)
    router = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 0}"))
    assert await burst(router.url, 3) == [200] * 3
    await wait_until(lambda: router.sample("dualstack_shadow_requests_total", tenant="shop", result="error") == 3)
    for result in ("match", "mismatch", "noise"):
        assert router.sample("dualstack_shadow_comparisons_total", tenant="shop", endpoint="GET /orders/{id}/status",
                             result=result) == 0

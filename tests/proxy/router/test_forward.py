"""Forwarding under stress: streaming, failing upstreams, disconnecting clients, and no leaks."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import RouterFactory, routing_yaml, wait_until
from tests.proxy.router.conftest import CHUNK, ResetMidBody

MB = 1024 * 1024
TENANTS = "t1: {backend: v1}\n"
HOST = {"Host": "t1.agentbar.ai"}


async def start_upstream(aiohttp_server: Any, handler: Any) -> str:
    app = web.Application(client_max_size=200 * MB)
    app.router.add_route("*", "/{tail:.*}", handler)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_uploads_stream_through_before_the_client_finishes(
    aiohttp_server: Any, make_router: RouterFactory
) -> None:
    first_chunk_upstream = asyncio.Event()
    received = []

    async def sink(request: web.Request) -> web.Response:
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            first_chunk_upstream.set()
        received.append((size, request.headers.get("Content-Length"), request.headers.get("Transfer-Encoding")))
        return web.json_response({"bytes": size})

    url = await start_upstream(aiohttp_server, sink)
    router = await make_router(routing_yaml(url, url, TENANTS))

    async def body() -> AsyncIterator[bytes]:
        yield CHUNK
        # The rest is only sent once the upstream has seen the first chunk: a router that buffered
        # the whole body would wait for the end first, and this would time out.
        await asyncio.wait_for(first_chunk_upstream.wait(), timeout=10)
        for _ in range(15):
            yield CHUNK

    async with aiohttp.ClientSession() as session:
        async with session.post(f"{router.url}/upload", data=body(), headers=HOST) as response:
            assert response.status == 200
            assert await response.json() == {"bytes": 16 * len(CHUNK)}
        assert received[-1] == (16 * len(CHUNK), None, "chunked")

        first_chunk_upstream.clear()
        headers = {**HOST, "Content-Length": str(16 * len(CHUNK))}
        async with session.post(f"{router.url}/upload", data=body(), headers=headers) as response:
            assert await response.json() == {"bytes": 16 * len(CHUNK)}
        assert received[-1] == (16 * len(CHUNK), str(16 * len(CHUNK)), None)  # length kept, not chunked


async def test_downloads_stream_through_before_the_upstream_finishes(
    aiohttp_server: Any, make_router: RouterFactory
) -> None:
    client_has_first = asyncio.Event()

    async def source(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = 8 * len(CHUNK)
        await response.prepare(request)
        await response.write(CHUNK)
        await asyncio.wait_for(client_has_first.wait(), timeout=10)
        for _ in range(7):
            await response.write(CHUNK)
        return response

    url = await start_upstream(aiohttp_server, source)
    router = await make_router(routing_yaml(url, url, TENANTS))
    async with aiohttp.ClientSession() as session, session.get(f"{router.url}/file", headers=HOST) as response:
        assert response.headers["Content-Length"] == str(8 * len(CHUNK))
        first = await response.content.readany()
        assert first
        client_has_first.set()
        rest = await response.read()
        assert len(first) + len(rest) == 8 * len(CHUNK)


async def test_50_mb_each_way_with_bounded_memory(aiohttp_server: Any, make_router: RouterFactory) -> None:
    total = 50 * MB

    async def both_ways(request: web.Request) -> web.StreamResponse:
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
        assert size == total
        response = web.StreamResponse()  # no length: chunked all the way
        await response.prepare(request)
        for _ in range(total // len(CHUNK)):
            await response.write(CHUNK)
        return response

    url = await start_upstream(aiohttp_server, both_ways)
    router = await make_router(routing_yaml(url, url, TENANTS))

    async def body() -> AsyncIterator[bytes]:
        for _ in range(total // len(CHUNK)):
            yield CHUNK

    tracemalloc.start()
    try:
        async with aiohttp.ClientSession() as session, session.put(
            f"{router.url}/big", data=body(), headers=HOST
        ) as response:
            received = 0
            async for chunk in response.content.iter_any():
                received += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == total
    # Client, router and upstream all live in this process; together they stay far below 50 MB.
    assert peak < 12 * MB, f"peak traced memory {peak / MB:.1f} MB"


async def test_refused_upstream_is_a_502_json_with_the_request_id(free_port: Callable[[], int], make_router: RouterFactory) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    router = await make_router(routing_yaml(dead, dead, TENANTS))
    async with aiohttp.ClientSession() as session, session.get(f"{router.url}/x", headers=HOST) as response:
        assert response.status == 502
        body = await response.json()
    assert body == {"success": False, "error": "bad_gateway",
                    "message": "backend v1 refused or could not be reached",
                    "requestId": response.headers["X-Request-ID"]}
    assert response.headers["X-Dualstack-Backend"] == "v1"
    assert router.sample("dualstack_upstream_errors_total", tenant="t1", backend="v1", kind="connect") == 1
    assert router.sample("dualstack_requests_total", tenant="t1", backend="v1", code_class="5xx") == 1


async def test_slow_upstream_is_a_504(aiohttp_server: Any, make_router: RouterFactory) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    url = await start_upstream(aiohttp_server, slow)
    router = await make_router(routing_yaml(url, url, TENANTS, timeouts=", read_timeout_s: 0.2"))
    async with aiohttp.ClientSession() as session, session.get(f"{router.url}/x", headers=HOST) as response:
        assert response.status == 504
        assert (await response.json())["error"] == "gateway_timeout"
    assert router.sample("dualstack_upstream_errors_total", tenant="t1", backend="v1", kind="timeout") == 1


async def test_upstream_reset_before_the_head_is_a_502(aiohttp_server: Any, make_router: RouterFactory) -> None:
    async def reset(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.abort()
        await asyncio.sleep(1)
        return web.Response()

    url = await start_upstream(aiohttp_server, reset)
    router = await make_router(routing_yaml(url, url, TENANTS))
    async with aiohttp.ClientSession() as session, session.post(
        f"{router.url}/payment/create", json={"a": 1}, headers=HOST
    ) as response:
        assert response.status == 502
        assert (await response.json())["message"] == "backend v1 closed the connection"
    assert router.sample("dualstack_upstream_errors_total", tenant="t1", backend="v1", kind="reset") == 1


@pytest.mark.parametrize("declared_length", [True, False])
async def test_upstream_reset_mid_body_is_never_a_complete_looking_response(
    reset_mid_body: ResetMidBody, make_router: RouterFactory, declared_length: bool
) -> None:
    url = await reset_mid_body(declared_length=declared_length)
    router = await make_router(routing_yaml(url, url, TENANTS))
    async with aiohttp.ClientSession() as session, session.get(f"{router.url}/x", headers=HOST) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    await wait_until(lambda: router.sample("dualstack_upstream_errors_total", tenant="t1", backend="v1",
                                           kind="reset") == 1)


async def test_client_disconnect_cancels_the_upstream_request(
    aiohttp_server: Any, make_router: RouterFactory
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return web.Response()

    url = await start_upstream(aiohttp_server, hang)
    router = await make_router(routing_yaml(url, url, TENANTS))
    async with aiohttp.ClientSession() as session:
        task = asyncio.ensure_future(session.get(f"{router.url}/x", headers=HOST))
        await asyncio.wait_for(started.wait(), timeout=5)
        task.cancel()  # closes the client's connection to the router
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.wait_for(cancelled.wait(), timeout=5)
    await wait_until(lambda: router.sample("dualstack_upstream_errors_total", tenant="t1", backend="v1",
                                           kind="client_disconnect") == 1)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_thousands_of_failures_leak_no_sockets_or_tasks(
    aiohttp_server: Any, make_router: RouterFactory
) -> None:
    hangs = {"started": 0, "cancelled": 0}
    arrived: dict[str, asyncio.Event] = {}

    async def flaky(request: web.Request) -> web.StreamResponse:
        if request.path == "/reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if request.path.startswith("/hang/"):
            hangs["started"] += 1
            arrived[request.path].set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                hangs["cancelled"] += 1
                raise
        return web.Response(text="ok")

    url = await start_upstream(aiohttp_server, flaky)
    router = await make_router(routing_yaml(url, url, TENANTS))
    async with aiohttp.ClientSession() as warm:
        await (await warm.get(f"{router.url}/ok", headers=HOST)).read()
    await asyncio.sleep(0.1)
    fds_before, tasks_before = open_fds(), len(asyncio.all_tasks())

    async def one_reset(session: aiohttp.ClientSession) -> None:
        async with session.get(f"{router.url}/reset", headers=HOST) as response:
            assert response.status == 502

    async def one_disconnect(session: aiohttp.ClientSession, n: int) -> None:
        # The client goes away only once the upstream has the request: a real mid-request disconnect.
        path = f"/hang/{n}"
        arrived[path] = asyncio.Event()
        request = asyncio.ensure_future(session.get(f"{router.url}{path}", headers=HOST))
        await asyncio.wait_for(arrived[path].wait(), timeout=10)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        for batch in range(10):
            await asyncio.gather(*(one_reset(session) for _ in range(50)),
                                 *(one_disconnect(session, batch * 50 + i) for i in range(50)))
    # Every upstream request whose client went away was cancelled, and counted as a disconnect.
    await wait_until(lambda: hangs["cancelled"] == hangs["started"] == 500)
    await wait_until(lambda: router.sample("dualstack_upstream_errors_total", tenant="t1", backend="v1",
                                           kind="client_disconnect") == 500)
    assert router.sample("dualstack_upstream_errors_total", tenant="t1", backend="v1", kind="reset") == 500
    # Every one of the 1,000 events has been cleaned up: connections closed, handlers finished.
    await wait_until(lambda: open_fds() <= fds_before + 5 and len(asyncio.all_tasks()) <= tasks_before + 2,
                     timeout_s=10)

"""The upstream client against scripted backends: real sockets on loopback, exact bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from controlplane.config.model import UpstreamSpec
from proxy.http1.pool import UpstreamError, UpstreamPool
from tests.conftest import RouterFactory, routing_yaml
from tests.proxy.http1.conftest import Script, read_request

HOST = {"Host": "t1.agentbar.ai"}
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


async def fetch(router_url: str, method: str = "GET", **kwargs: Any) -> tuple[int, bytes, Any]:
    async with aiohttp.ClientSession() as session, session.request(
        method, f"{router_url}/x", headers=HOST, **kwargs
    ) as response:
        return response.status, await response.read(), response.headers


async def test_keep_alive_connections_are_reused(raw_upstream, make_router: RouterFactory) -> None:
    connections = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(OK)

    url = await raw_upstream(script)
    router = await make_router(routing_yaml(url, url, "t1: {backend: v1}\n"))
    for _ in range(5):
        assert (await fetch(router.url))[:2] == (200, b"ok")
    assert connections == 1


async def test_pool_size_bounds_connections_and_waiters_get_them(aiohttp_server: Any) -> None:
    busy = 0
    most = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal busy, most
        busy += 1
        most = max(most, busy)
        await asyncio.sleep(0.05)
        busy -= 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", slow)
    server = await aiohttp_server(app)
    pool = UpstreamPool(UpstreamSpec("v1", str(server.make_url("")).rstrip("/"), pool_size=2,
                                     connect_timeout_s=5))

    async def one() -> int:
        conn, _ = await pool.acquire()
        try:
            conn.begin(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None, 5.0)
            await conn.read_head()
            await conn.read_all()
            return conn.status
        finally:
            pool.release(conn, reusable=conn.finish())

    assert await asyncio.gather(*(one() for _ in range(6))) == [200] * 6
    assert most == 2 and pool.open_connections == 2 and pool.idle_connections == 2
    await pool.close()


async def test_an_exhausted_pool_times_out_as_a_504(raw_upstream, make_router: RouterFactory) -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    url = await raw_upstream(hang)
    router = await make_router(routing_yaml(url, url, "t1: {backend: v1}\n",
                                            timeouts=", pool_size: 1, connect_timeout_s: 0.2"))
    async with aiohttp.ClientSession() as session:
        first = asyncio.ensure_future(session.get(f"{router.url}/x", headers=HOST))
        await asyncio.sleep(0.05)
        status, body, _ = await fetch(router.url)
        first.cancel()
    assert status == 504
    assert b"all 1 connections stayed busy" in body
    assert router.sample("dualstack_upstream_errors_total", tenant="t1", backend="v1", kind="pool_timeout") == 1


async def test_idle_connections_are_retired_before_the_backend_closes_them(aiohttp_server: Any) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    server = await aiohttp_server(app)
    pool = UpstreamPool(UpstreamSpec("v1", str(server.make_url("")).rstrip("/")), idle_timeout_s=0.05)
    conn, reused = await pool.acquire()
    assert not reused
    conn.begin(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None, 5.0)
    await conn.read_head()
    await conn.read_all()
    pool.release(conn, reusable=conn.finish())
    again, reused = await pool.acquire()
    assert reused and again is conn
    again.begin(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None, 5.0)
    await again.read_head()
    await again.read_all()
    pool.release(again, reusable=again.finish())
    await asyncio.sleep(0.1)
    fresh, reused = await pool.acquire()
    assert not reused and fresh is not conn
    pool.release(fresh, reusable=False)
    await pool.close()


def second_request_dies(seen: list[bytes]) -> Script:
    """Answers the first request on a connection, then drops the connection on the second one,
    as a backend does when its keep-alive timer fires just as the router reuses the connection."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = True
        while True:
            try:
                request = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            seen.append(request.split(b"\r\n", 1)[0])
            if not first:
                writer.transport.abort()
                return
            first = False
            writer.write(OK)

    return script


async def test_a_safe_request_is_retried_once_on_a_dead_reused_connection(
    raw_upstream, make_router: RouterFactory
) -> None:
    seen: list[bytes] = []
    url = await raw_upstream(second_request_dies(seen))
    router = await make_router(routing_yaml(url, url, "t1: {backend: v1}\n"))
    assert (await fetch(router.url))[:2] == (200, b"ok")
    assert (await fetch(router.url))[:2] == (200, b"ok")  # retried on a fresh connection
    assert seen == [b"GET /x HTTP/1.1"] * 3


async def test_a_payment_post_is_never_sent_twice(raw_upstream, make_router: RouterFactory) -> None:
    seen: list[bytes] = []
    url = await raw_upstream(second_request_dies(seen))
    router = await make_router(routing_yaml(url, url, "t1: {backend: v1}\n"))
    assert (await fetch(router.url, "POST", json={"orderId": "A"}))[0] == 200
    status, body, _ = await fetch(router.url, "POST", json={"orderId": "B"})
    assert status == 502 and b"closed the connection" in body
    assert seen == [b"POST /x HTTP/1.1"] * 2  # the second POST went out exactly once


async def test_informational_responses_are_skipped(raw_upstream, make_router: RouterFactory) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK)

    url = await raw_upstream(script)
    router = await make_router(routing_yaml(url, url, "t1: {backend: v1}\n"))
    status, body, headers = await fetch(router.url)
    assert (status, body) == (200, b"ok") and "Link" not in headers


async def test_an_invalid_response_is_a_502(raw_upstream, make_router: RouterFactory) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")

    url = await raw_upstream(script)
    router = await make_router(routing_yaml(url, url, "t1: {backend: v1}\n"))
    status, body, _ = await fetch(router.url)
    assert status == 502 and b"invalid HTTP response" in body
    assert router.sample("dualstack_upstream_errors_total", tenant="t1", backend="v1", kind="bad_response") == 1


async def test_response_hop_by_hop_headers_are_removed(raw_upstream, make_router: RouterFactory) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: secret\r\n"
                     b"Keep-Alive: timeout=5\r\nX-Kept: 1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
                     b"Content-Length: 2\r\n\r\nok")

    url = await raw_upstream(script)
    router = await make_router(routing_yaml(url, url, "t1: {backend: v1}\n"))
    status, _, headers = await fetch(router.url)
    assert status == 200
    assert "X-Internal" not in headers and "Keep-Alive" not in headers
    assert headers["X-Kept"] == "1" and headers.getall("Set-Cookie") == ["a=1", "b=2"]


async def test_head_keeps_the_length_and_sends_no_body(aiohttp_server: Any, make_router: RouterFactory) -> None:
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 100_000)

    app = web.Application()
    app.router.add_get("/{tail:.*}", big)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    router = await make_router(routing_yaml(url, url, "t1: {backend: v1}\n"))
    status, body, headers = await fetch(router.url, "HEAD")
    assert (status, body, headers["Content-Length"]) == (200, b"", "100000")
    assert (await fetch(router.url))[1] == b"x" * 100_000  # the next request is unaffected


async def test_an_early_answer_to_an_upload_is_relayed(raw_upstream, make_router: RouterFactory) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!")
        await writer.drain()
        writer.close()

    url = await raw_upstream(script)
    router = await make_router(routing_yaml(url, url, "t1: {backend: v1}\n"))

    async def body() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"y" * 65536
            await asyncio.sleep(0)

    status, text, _ = await fetch(router.url, "POST", data=body())
    assert status in (413, 502)  # 413 when it arrives before the router notices the closed socket
    if status == 413:
        assert text == b"too big!"


async def test_upstream_error_carries_a_metric_kind() -> None:
    error = UpstreamError("timeout", "did not answer in time")
    assert (error.kind, str(error)) == ("timeout", "did not answer in time")

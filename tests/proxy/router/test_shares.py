"""Tenants sharing a backend: one tenant's slow uploads and hung answers leave the others served, and
what the router did is never counted as the backend's failure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from controlplane.config.tenant import TENANT_HEADER
from tests.conftest import RouterFactory, routing_yaml, wait_until
from tests.proxy.router.conftest import CHUNK, ResetMidBody

TENANTS = "alpha: {backend: v2}\nbeta: {backend: v2}\n"
ALPHA, BETA = {"Host": "alpha.agentbar.ai"}, {"Host": "beta.agentbar.ai"}


async def start_backend(aiohttp_server: Any, seen: dict[str, int]) -> str:
    async def handle(request: web.Request) -> web.StreamResponse:
        tenant = request.headers.get(TENANT_HEADER, "")
        seen[request.path] = seen.get(request.path, 0) + 1
        if request.path == "/hang":  # alpha's payment provider does not answer
            await asyncio.sleep(60)
        if request.path == "/big":
            response = web.StreamResponse()
            await response.prepare(request)
            with contextlib.suppress(ConnectionResetError):  # the router lets go of it when its client does
                for _ in range(400):
                    await response.write(CHUNK)
            return response
        await request.read()
        return web.Response(text=f"ok {tenant}")

    app = web.Application(client_max_size=100 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


def config(url: str, *, pool: str, limits: str = "") -> str:
    text = routing_yaml(url, url, TENANTS, timeouts=f", {pool}")
    return text + (f"limits: {{{limits}}}\n" if limits else "")


async def slow_body(seconds: float) -> AsyncIterator[bytes]:
    for _ in range(int(seconds / 0.3)):
        yield b"y" * 100
        await asyncio.sleep(0.3)


async def test_a_noisy_tenant_cannot_starve_another_of_their_backend(
    aiohttp_server: Any, make_router: RouterFactory
) -> None:
    seen: dict[str, int] = {}
    url = await start_backend(aiohttp_server, seen)
    router = await make_router(config(url, pool="pool_size: 10, connect_timeout_s: 0.5, read_timeout_s: 30"))
    async with aiohttp.ClientSession() as session:
        async def alpha_hang() -> int:
            async with session.get(f"{router.url}/hang", headers=ALPHA) as response:
                return response.status

        async def alpha_upload() -> int:
            async with session.post(f"{router.url}/upload", headers=ALPHA, data=slow_body(20)) as response:
                return response.status

        attack = [asyncio.ensure_future(alpha_hang()) for _ in range(10)]
        attack += [asyncio.ensure_future(alpha_upload()) for _ in range(10)]
        await wait_until(lambda: seen.get("/hang", 0) + seen.get("/upload", 0) >= 5)
        await asyncio.sleep(0.6)  # alpha's requests past its share have waited and been refused
        beta = []
        for _ in range(30):
            async with session.get(f"{router.url}/pay", headers=BETA) as response:
                beta.append(response.status)
        refused = [task.result() for task in attack if task.done()]
        for task in attack:
            task.cancel()
        await asyncio.gather(*attack, return_exceptions=True)
    assert beta == [200] * 30
    assert refused and set(refused) == {503}  # alpha's extra requests, refused at once: its share is 5
    assert router.sample("dualstack_router_outcomes_total", tenant="alpha", backend="v2", outcome="tenant_busy") \
        == len(refused)
    assert router.sample("dualstack_requests_total", tenant="alpha", backend="v2", code_class="5xx") == 0


async def test_the_routers_own_failures_are_not_the_backends(aiohttp_server: Any, make_router: RouterFactory) -> None:
    seen: dict[str, int] = {}
    url = await start_backend(aiohttp_server, seen)
    tenants = TENANTS + "gamma: {backend: v2}\n"
    router = await make_router(routing_yaml(url, url, tenants, timeouts=", pool_size: 2, connect_timeout_s: 0.3"))
    async with aiohttp.ClientSession() as session:
        async def get(path: str, host: str) -> int:
            async with session.get(f"{router.url}{path}", headers={"Host": f"{host}.agentbar.ai"}) as response:
                return response.status

        hung = [asyncio.ensure_future(get("/hang", "alpha")), asyncio.ensure_future(get("/hang", "beta"))]
        await wait_until(lambda: seen.get("/hang", 0) == 2)
        assert await get("/pay", "gamma") == 504  # both connections stayed busy: the pool is full
        assert await get("/pay", "alpha") == 503  # alpha holds its share (1 of 2)
        for task in hung:
            task.cancel()
        await asyncio.gather(*hung, return_exceptions=True)
    for tenant in ("alpha", "beta"):
        await wait_until(lambda tenant=tenant: router.sample(  # type: ignore[misc]
            "dualstack_router_outcomes_total", tenant=tenant, backend="v2", outcome="client_disconnect") == 1)
    assert router.sample("dualstack_router_outcomes_total", tenant="gamma", backend="v2",
                         outcome="pool_timeout") == 1
    assert router.sample("dualstack_router_outcomes_total", tenant="alpha", backend="v2",
                         outcome="tenant_busy") == 1
    for tenant in ("alpha", "beta", "gamma"):
        assert router.sample("dualstack_requests_total", tenant=tenant, backend="v2", code_class="5xx") == 0


async def test_a_client_aborting_a_download_is_no_ones_error(aiohttp_server: Any, make_router: RouterFactory,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: dict[str, int] = {}
    url = await start_backend(aiohttp_server, seen)
    router = await make_router(config(url, pool="pool_size: 4"))
    async with aiohttp.ClientSession() as session:
        response = await session.get(f"{router.url}/big", headers=ALPHA)
        await response.content.read(1024)
        response.close()  # the client goes away mid-download
    await wait_until(lambda: router.sample("dualstack_router_outcomes_total", tenant="alpha", backend="v2",
                                           outcome="client_disconnect") == 1)
    assert router.sample("dualstack_requests_total", tenant="alpha", backend="v2", code_class="5xx") == 0
    assert router.sample("dualstack_router_outcomes_total", tenant="alpha", backend="v2", outcome="internal") == 0
    tracebacks = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert tracebacks == []  # it once logged one (a write to a client that had gone)


async def test_a_backend_reset_mid_body_counts_against_it(reset_mid_body: ResetMidBody,
                                                          make_router: RouterFactory) -> None:
    url = await reset_mid_body()
    router = await make_router(config(url, pool="pool_size: 4"))
    async with aiohttp.ClientSession() as session, session.get(f"{router.url}/x", headers=ALPHA) as response:
        with contextlib.suppress(aiohttp.ClientPayloadError):
            await response.read()
    await wait_until(lambda: router.sample("dualstack_requests_total", tenant="alpha", backend="v2",
                                           code_class="5xx") == 1)
    assert router.sample("dualstack_requests_total", tenant="alpha", backend="v2", code_class="2xx") == 0


async def test_a_stalled_request_body_is_a_408_and_frees_the_connection(
    aiohttp_server: Any, make_router: RouterFactory
) -> None:
    seen: dict[str, int] = {}
    url = await start_backend(aiohttp_server, seen)
    router = await make_router(config(url, pool="pool_size: 4", limits="body_timeout_s: 0.5"))

    async def stalls() -> AsyncIterator[bytes]:
        yield CHUNK * 2  # streamed (larger than a small body), then nothing
        await asyncio.sleep(10)

    async with aiohttp.ClientSession() as session, session.post(f"{router.url}/upload", headers=ALPHA,
                                                                data=stalls()) as response:
        assert response.status == 408
    assert router.sample("dualstack_router_outcomes_total", tenant="alpha", backend="v2",
                         outcome="client_timeout") == 1
    assert router.sample("dualstack_requests_total", tenant="alpha", backend="v2", code_class="4xx") == 0


async def test_a_client_that_stops_reading_frees_the_connection(
    aiohttp_server: Any, make_router: RouterFactory
) -> None:
    seen: dict[str, int] = {}
    url = await start_backend(aiohttp_server, seen)
    router = await make_router(config(url, pool="pool_size: 4", limits="body_timeout_s: 0.5"))
    host, port = router.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"GET /big HTTP/1.1\r\nHost: alpha.agentbar.ai\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")  # then reads nothing more
        await wait_until(lambda: router.sample("dualstack_router_outcomes_total", tenant="alpha", backend="v2",
                                               outcome="client_timeout") == 1, timeout_s=10)
    finally:
        writer.close()

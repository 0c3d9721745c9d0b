"""Hostile clients against the real router process: dribbled heads, idle keep-alive connections and
more connections than a worker grants are cut off or refused, counted, and never starve the rest."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.conftest import Upstream, routing_yaml
from tests.proxy.router.conftest import Starter

TENANTS = "buatfilm: {backend: v1}\ndemo: {backend: v2}\n"


def limited(upstreams: dict[str, Upstream], limits: str) -> str:
    v1, v2 = (str(upstreams[n].server.make_url("")).rstrip("/") for n in ("v1", "v2"))
    return routing_yaml(v1, v2, TENANTS) + f"limits: {{{limits}}}\n"


async def _closed_by_peer(reader: asyncio.StreamReader, within_s: float) -> bool:
    try:
        while await asyncio.wait_for(reader.read(65536), within_s):
            pass  # a refusal's answer, then the end
        return True
    except TimeoutError:
        return False


async def test_dribbled_request_heads_are_cut_off(upstreams: dict[str, Upstream],
                                                  start_router: Starter) -> None:
    router = await start_router(limited(upstreams, "header_timeout_s: 0.5, keepalive_timeout_s: 600"))
    host, port = router.url.removeprefix("http://").split(":")
    streams = [await asyncio.open_connection(host, int(port)) for _ in range(30)]
    for _, writer in streams:
        writer.write(b"GET /health HTTP/1.1\r\nHost: demo.agentbar.ai\r\n")

    async def dribble() -> None:  # a header line every 0.2 s: never idle, never done
        for i in range(40):
            for _, writer in streams:
                if not writer.is_closing():
                    writer.write(b"X-%d: y\r\n" % i)
            await asyncio.sleep(0.2)

    dribbling = asyncio.ensure_future(dribble())
    try:
        closed = await asyncio.gather(*(_closed_by_peer(reader, 6.0) for reader, _ in streams))
    finally:
        dribbling.cancel()
        for _, writer in streams:
            writer.close()
    assert all(closed), f"{closed.count(False)} of 30 dribbled heads still open"
    assert await router.sample(r'dualstack_client_connections_closed_total\{reason="header_timeout"\}') == 30
    async with aiohttp.ClientSession() as session:  # well-behaved clients are served as before
        async with session.get(f"{router.url}/x", headers={"Host": "demo.agentbar.ai"}) as response:
            assert response.status == 200


async def test_idle_keep_alive_connections_are_closed(upstreams: dict[str, Upstream],
                                                      start_router: Starter) -> None:
    router = await start_router(limited(upstreams, "keepalive_timeout_s: 0.5"))
    host, port = router.url.removeprefix("http://").split(":")
    streams = [await asyncio.open_connection(host, int(port)) for _ in range(30)]
    for reader, writer in streams:
        writer.write(b"GET /x HTTP/1.1\r\nHost: demo.agentbar.ai\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")  # an answer, then the connection stays open, idle
    try:
        closed = await asyncio.gather(*(_closed_by_peer(reader, 6.0) for reader, _ in streams))
    finally:
        for _, writer in streams:
            writer.close()
    assert all(closed), f"{closed.count(False)} of 30 idle connections still open"


async def test_past_max_connections_a_connection_gets_503_and_the_rest_are_served(
    upstreams: dict[str, Upstream], start_router: Starter
) -> None:
    router = await start_router(limited(upstreams, "max_connections: 20, keepalive_timeout_s: 600"))
    host, port = router.url.removeprefix("http://").split(":")
    idle = [await asyncio.open_connection(host, int(port)) for _ in range(20)]
    try:
        async def open_gauge() -> float:
            return await router.sample("dualstack_client_connections")

        for _ in range(100):
            if await open_gauge() == 20:
                break
            await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /x HTTP/1.1\r\nHost: demo.agentbar.ai\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"overloaded" in answer
        assert await router.sample(r'dualstack_client_connections_closed_total\{reason="max_connections"\}') == 1
        async with aiohttp.ClientSession() as session, session.get(f"{router.admin_url}/healthz") as response:
            assert response.status == 200  # the admin listener is apart
    finally:
        for _, w in idle:
            w.close()
    async with aiohttp.ClientSession() as session:
        for _ in range(100):  # once the idle ones are gone, new clients are served again
            async with session.get(f"{router.url}/x", headers={"Host": "demo.agentbar.ai"}) as response:
                if response.status == 200:
                    break
            await asyncio.sleep(0.05)
        assert response.status == 200

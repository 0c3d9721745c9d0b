"""The client core both users share: endpoints, TLS, and answers nobody asked for.

The misbehaving backends are raw TCP servers on loopback writing exact bytes; the pool and the
pipelined channel are each run against them."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiohttp import web

from controlplane.config.model import ShadowLimits, UpstreamSpec
from proxy.http1.core import Endpoint, UpstreamError, default_tls
from proxy.http1.pipeline import ShadowChannel
from proxy.http1.pool import UpstreamPool
from tests.conftest import wait_until
from tests.proxy.http1.conftest import RawUpstream, read_request

GET = b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n"
LATE_HEAD = b"HTTP/1.1 200 Late\r\nContent-Length: 4\r\n\r\n"
LATE = LATE_HEAD + b"late"


def answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def path_of(request: bytes) -> bytes:
    return request.split(b" ", 2)[1]


async def serve_paths(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A well-behaved backend: each request is answered with its own path."""
    while True:
        try:
            request = await read_request(reader)
        except asyncio.IncompleteReadError:
            return
        writer.write(answer(path_of(request)))


async def exchange(pool: UpstreamPool, name: bytes) -> tuple[int, str, bytes, bool]:
    """(status, reason, body, whether the connection could be reused)."""
    conn, _ = await pool.acquire()
    conn.begin(GET % name, None, 5.0)
    await conn.read_head()
    body = await conn.read_all()
    reusable = conn.finish()
    pool.release(conn, reusable=reusable)
    return conn.status, conn.reason, body, reusable


class Outcomes:
    """What the channel hands to each copy's callback."""

    def __init__(self) -> None:
        self.by_copy: dict[str, tuple[int, bytes, float | str]] = {}

    def offer(self, channel: ShadowChannel, name: str) -> None:
        def done(status: int, body: bytes, outcome: float | str) -> None:
            self.by_copy[name] = (status, body, outcome if isinstance(outcome, str) else "answered")

        assert channel.offer(GET % name.encode(), None, done)

    async def of(self, *names: str) -> list[tuple[int, bytes, float | str]]:
        await wait_until(lambda: all(name in self.by_copy for name in names))
        return [self.by_copy[name] for name in names]


def channel_to(url: str, **tls: ssl.SSLContext) -> ShadowChannel:
    return ShadowChannel(UpstreamSpec("v2", url), ShadowLimits(timeout_s=5.0), **tls)


# -- endpoints and TLS ----------------------------------------------------------------------------


def test_an_endpoint_is_parsed_once_from_the_url() -> None:
    secure = Endpoint.of("https://v2.internal")
    assert (secure.host, secure.port, secure.tls) == ("v2.internal", 443, default_tls())
    assert secure.tls is not None
    assert secure.tls.verify_mode == ssl.CERT_REQUIRED and secure.tls.check_hostname
    assert Endpoint.of("http://v1.internal") == Endpoint("v1.internal", 80, None)
    own = ssl.create_default_context()
    assert Endpoint.of("https://127.0.0.1:8443", tls=own) == Endpoint("127.0.0.1", 8443, own)
    assert Endpoint.of("http://127.0.0.1:8080", tls=own).tls is None  # never TLS to an http URL


async def tls_upstream(aiohttp_server: Any, server_tls: ssl.SSLContext) -> str:
    async def order(request: web.Request) -> web.Response:
        return web.json_response({"secure": request.secure, "path": request.path})

    app = web.Application()
    app.router.add_get("/{tail:.*}", order)
    server = await aiohttp_server(app, ssl=server_tls)
    return f"https://127.0.0.1:{server.port}"


async def test_a_shadow_copy_to_an_https_backend_goes_over_verified_tls(
    aiohttp_server: Any, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    url = await tls_upstream(aiohttp_server, server_tls)
    outcomes = Outcomes()
    trusting, default = channel_to(url, tls=client_tls), channel_to(url)
    outcomes.offer(trusting, "trusted")
    outcomes.offer(default, "untrusted")  # a self-signed certificate is not in the system's store
    [(status, body, outcome), untrusted] = await outcomes.of("trusted", "untrusted")
    assert (status, outcome) == (200, "answered") and body == b'{"secure": true, "path": "/trusted"}'
    assert untrusted == (0, b"", "error")
    trusting.close()
    default.close()


async def test_the_pool_verifies_an_https_backend_with_the_context_it_is_given(
    aiohttp_server: Any, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    url = await tls_upstream(aiohttp_server, server_tls)
    pool = UpstreamPool(UpstreamSpec("v2", url), tls=client_tls)
    assert await exchange(pool, b"trusted") == (200, "OK", b'{"secure": true, "path": "/trusted"}', True)
    await pool.close()
    default = UpstreamPool(UpstreamSpec("v2", url))
    try:
        await default.acquire()
        raise AssertionError("connected to a backend whose certificate nobody trusts")
    except UpstreamError as error:
        assert error.kind == "connect"
    await default.close()


# -- the pool: one answer per exchange ------------------------------------------------------------


def first_connection(script: Any) -> Any:
    """The first connection runs `script`; later ones behave (serve_paths)."""
    connections = 0

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await (script if connections == 1 else serve_paths)(reader, writer)

    return run


async def test_a_second_answer_in_the_packet_of_the_first_is_not_merged_into_it(
    raw_upstream: RawUpstream
) -> None:
    async def twice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"ok") + answer(b"more"))
        await reader.read()

    pool = UpstreamPool(UpstreamSpec("v1", await raw_upstream(first_connection(twice))))
    assert await exchange(pool, b"one") == (200, "OK", b"ok", False)
    assert await exchange(pool, b"two") == (200, "OK", b"/two", True)  # on a fresh connection
    await pool.close()


async def late_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers the first request together with the head of an answer nobody asked for; the rest of
    that comes before the answer to the next request on the connection, if there is one."""
    writer.write(answer(path_of(await read_request(reader))) + LATE_HEAD)
    try:
        request = await read_request(reader)
    except asyncio.IncompleteReadError:
        return
    writer.write(b"late" + answer(path_of(request)))
    await reader.read()


async def test_a_late_answer_is_never_the_next_requests_answer(raw_upstream: RawUpstream) -> None:
    pool = UpstreamPool(UpstreamSpec("v1", await raw_upstream(first_connection(late_answer))))
    first = await exchange(pool, b"one")
    assert await exchange(pool, b"two") == (200, "OK", b"/two", True)
    assert first == (200, "OK", b"/one", False)
    await pool.close()


async def test_bytes_after_the_answer_close_the_connection_before_the_exchange_ends(
    raw_upstream: RawUpstream
) -> None:
    answered = asyncio.Event()

    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"ok"))
        await answered.wait()
        writer.write(LATE)
        await reader.read()

    pool = UpstreamPool(UpstreamSpec("v1", await raw_upstream(first_connection(late))))
    conn, _ = await pool.acquire()
    conn.begin(GET % b"one", None, 5.0)
    await conn.read_head()
    assert await conn.read_all() == b"ok"
    answered.set()  # the router is still relaying this answer when the unasked one arrives
    await wait_until(lambda: conn.closed)
    assert (conn.status, conn.reason) == (200, "OK")
    assert not conn.finish()
    pool.release(conn, reusable=False)
    assert await exchange(pool, b"two") == (200, "OK", b"/two", True)
    await pool.close()


# -- the pipelined channel: as many answers as copies in flight -----------------------------------


async def test_more_answers_than_copies_in_flight_fail_those_copies(raw_upstream: RawUpstream) -> None:
    async def three_for_two(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        one, two = path_of(await read_request(reader)), path_of(await read_request(reader))
        writer.write(answer(one) + answer(one) + answer(two))  # the first was answered twice
        await reader.read()

    channel = channel_to(await raw_upstream(first_connection(three_for_two)))
    outcomes = Outcomes()
    outcomes.offer(channel, "one")
    outcomes.offer(channel, "two")  # the same loop pass: both leave in one write
    assert await outcomes.of("one", "two") == [(0, b"", "error")] * 2
    outcomes.offer(channel, "three")
    assert await outcomes.of("three") == [(200, b"/three", "answered")]
    channel.close()


async def test_a_late_answer_is_never_the_next_copys_answer(raw_upstream: RawUpstream) -> None:
    channel = channel_to(await raw_upstream(first_connection(late_answer)))
    outcomes = Outcomes()
    outcomes.offer(channel, "one")
    await outcomes.of("one")
    outcomes.offer(channel, "two")
    assert await outcomes.of("two") == [(200, b"/two", "answered")]
    assert outcomes.by_copy["one"] == (0, b"", "error")  # its packet carried more than its answer
    channel.close()

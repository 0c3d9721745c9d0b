"""Forwarding one request to an upstream and relaying the answer, streaming when it is large.

Small bodies (a declared length up to SMALL_BODY_BYTES) are read whole, which is cheaper than
streaming them; anything larger or of unknown length is streamed chunk by chunk in both directions
with backpressure, so a 50 MB upload or download never sits in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from controlplane.config.model import UpstreamSpec
from proxy.http1.pool import UpstreamConnection, UpstreamError, UpstreamPool
from proxy.router.headers import client_response_headers
from proxy.router.shares import TenantShare
from proxy.serving.tasks import TaskPool

log = logging.getLogger(__name__)

SMALL_BODY_BYTES: Final = 64 * 1024
CHUNK_BYTES: Final = 64 * 1024
_NO_BODY_STATUSES: Final = frozenset({204, 304})
# Methods safe to send again when a reused keep-alive connection died before any answer. A payment
# creation (POST) is never sent twice.
_RETRYABLE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_STATUS_OF_KIND: Final = {"connect_timeout": 504, "pool_timeout": 504, "timeout": 504, "tenant_busy": 503}


class UpstreamPools:
    """One connection pool per upstream spec; pools of replaced specs close after a grace period."""

    def __init__(self, tasks: TaskPool) -> None:
        self._pools: dict[UpstreamSpec, UpstreamPool] = {}
        self._shares: dict[tuple[UpstreamSpec, str], TenantShare] = {}
        self._tasks = tasks

    def pool_for(self, spec: UpstreamSpec) -> UpstreamPool:
        pool = self._pools.get(spec)
        if pool is None:
            pool = self._pools[spec] = UpstreamPool(spec)
        return pool

    def share_for(self, spec: UpstreamSpec, tenant: str, limit: int) -> TenantShare:
        """The tenant's share of the upstream's connections (`limit` follows the routing file)."""
        share = self._shares.get((spec, tenant))
        if share is None:
            share = self._shares[(spec, tenant)] = TenantShare(limit)
        elif share.limit != limit:
            share.limit = limit
        return share

    def keep_only(self, specs: set[UpstreamSpec]) -> None:
        """After a reload: retire pools of specs no longer in use, once in-flight work is done."""
        for key in [key for key in self._shares if key[0] not in specs]:
            del self._shares[key]  # its holders still give their slots back to the object they hold
        for spec in list(self._pools):
            if spec not in specs:
                pool = self._pools.pop(spec)
                grace_s = spec.read_timeout_s + spec.connect_timeout_s
                if not self._tasks.spawn(_close_later(pool, grace_s), name=f"retire-{spec.name}"):
                    self._tasks.spawn(pool.close(), name=f"close-{spec.name}")

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()


async def _close_later(pool: UpstreamPool, grace_s: float) -> None:
    try:
        await asyncio.sleep(grace_s)
    finally:
        await pool.close()


@dataclass(slots=True)
class Capture:
    """The primary's answer, kept for the shadow comparison when it was small enough to read whole."""

    status: int = 0
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class Exchanged:
    status: int
    body: bytes
    headers: list[tuple[str, str]]


async def exchange(pool: UpstreamPool, head: bytes, body: bytes | None, *, max_body_bytes: int) -> Exchanged:
    """One whole request/response with an upstream (shadow copies): no streaming, bounded size."""
    conn, _ = await pool.acquire()
    try:
        conn.begin(head, body, pool.spec.read_timeout_s)
        await conn.read_head()
        length = _content_length(conn.headers)
        if length is not None and length > max_body_bytes:
            raise UpstreamError("too_large", f"answered {length} bytes, more than {max_body_bytes}")
        return Exchanged(conn.status, await conn.read_all(), conn.headers)
    finally:
        pool.release(conn, reusable=conn.finish())


class UpstreamFailure(Exception):
    """No response head could be had from the upstream; becomes a 502 or 504 for the client."""

    def __init__(self, kind: str, status: int, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.message = message


class ClientFailure(Exception):
    """The client went away or was too slow (no one's error but its own): 408 if nothing was sent yet,
    else the started `response`, its connection aborted."""

    def __init__(self, outcome: str, response: web.StreamResponse | None = None) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.response = response


async def _body_chunks(request: web.Request, timeout_s: float) -> AsyncIterator[bytes]:
    """The request body, chunk by chunk, each within `timeout_s` of the previous one."""
    content = request.content
    while True:
        try:
            async with asyncio.timeout(timeout_s):
                chunk = await content.read(CHUNK_BYTES)
        except TimeoutError:
            raise ClientFailure("client_timeout") from None
        if not chunk:
            return
        yield chunk


class MidStreamFailure(Exception):
    """The upstream failed after the response head was sent; the client connection was aborted."""

    def __init__(self, kind: str, response: web.StreamResponse) -> None:
        super().__init__(kind)
        self.kind = kind
        self.response = response


def _failure(error: UpstreamError, backend: str) -> UpstreamFailure:
    status = _STATUS_OF_KIND.get(error.kind, 502)
    return UpstreamFailure(error.kind, status, f"backend {backend} {error.message}")


async def relay(
    request: web.Request,
    pool: UpstreamPool,
    head: bytes,
    *,
    chunked: bool,
    request_id: str,
    backend: str,
    capture: Capture | None = None,
    share: TenantShare | None = None,
    body_timeout_s: float = 10.0,
) -> web.StreamResponse:
    """Send the request upstream and relay the answer; raise UpstreamFailure before any byte is sent.

    Errors after the response head went out cannot become a 5xx any more: the client connection is
    aborted instead, so a truncated body is never mistaken for a complete one. The tenant's `share`
    is held while it holds a connection; a client slower than `body_timeout_s` between two pieces of
    a body (sending or reading) raises ClientFailure.
    """
    if share is None:
        return await _relay(request, pool, head, chunked=chunked, request_id=request_id, backend=backend,
                            capture=capture, body_timeout_s=body_timeout_s)
    try:
        await share.enter(pool.spec.connect_timeout_s)
    except UpstreamError as error:
        raise _failure(error, backend) from None
    try:
        return await _relay(request, pool, head, chunked=chunked, request_id=request_id, backend=backend,
                            capture=capture, body_timeout_s=body_timeout_s)
    finally:
        share.leave()


async def _relay(request: web.Request, pool: UpstreamPool, head: bytes, *, chunked: bool, request_id: str,
                 backend: str, capture: Capture | None, body_timeout_s: float) -> web.StreamResponse:
    small_body: bytes | None = None
    streaming = False
    if request.body_exists:
        length = request.content_length
        # A mirrored body is read whole (the mirror bounded its size): the shadow copy needs it too.
        if length is not None and (length <= SMALL_BODY_BYTES or capture is not None):
            try:
                async with asyncio.timeout(body_timeout_s):  # read before any connection is taken
                    small_body = await request.read()
            except TimeoutError:
                raise ClientFailure("client_timeout") from None
        else:
            streaming = True
    retryable = not streaming and request.method in _RETRYABLE_METHODS
    read_timeout_s = pool.spec.read_timeout_s
    try:
        conn, reused = await pool.acquire()
    except UpstreamError as error:
        raise _failure(error, backend) from None
    try:
        try:
            conn.begin(head, small_body, read_timeout_s, streaming=streaming)
            if streaming:
                await conn.send_body(_body_chunks(request, body_timeout_s), chunked=chunked)
            await conn.read_head()
        except UpstreamError as error:
            if not (reused and retryable and error.kind == "reset" and not conn.received_any):
                raise _failure(error, backend) from None
            # The backend closed an idle keep-alive connection as we reused it: one fresh try.
            pool.release(conn, reusable=False)
            try:
                conn, reused = await pool.acquire(fresh=True)
                conn.begin(head, small_body, read_timeout_s)
                await conn.read_head()
            except UpstreamError as retry_error:
                raise _failure(retry_error, backend) from None
        return await _answer(request, conn, request_id=request_id, backend=backend, capture=capture,
                             body_timeout_s=body_timeout_s)
    finally:
        # Reused only after a complete exchange; a cancelled or failed one closes the connection.
        pool.release(conn, reusable=conn.finish())


async def _answer(
    request: web.Request, conn: UpstreamConnection, *, request_id: str, backend: str, capture: Capture | None,
    body_timeout_s: float,
) -> web.StreamResponse:
    out_headers = client_response_headers(conn.headers, request_id=request_id, backend=backend)
    length = _content_length(conn.headers)
    no_body = request.method == "HEAD" or conn.status in _NO_BODY_STATUSES
    reason = conn.reason or None
    if not no_body and length is not None and length <= SMALL_BODY_BYTES:
        try:
            payload = await conn.read_all()
        except UpstreamError as error:
            raise _failure(error, backend) from None
        if capture is not None:
            capture.status, capture.body = conn.status, payload
        return web.Response(status=conn.status, reason=reason, headers=out_headers, body=payload)
    response = web.StreamResponse(status=conn.status, reason=reason, headers=out_headers)
    if length is not None:
        response.content_length = length
    await response.prepare(request)
    if no_body:
        await response.write_eof()
        return response
    try:
        while (chunk := await conn.read_chunk()) is not None:
            async with asyncio.timeout(body_timeout_s):  # a client that stops reading holds a connection
                await response.write(chunk)
    except TimeoutError:
        _abort(request)
        raise ClientFailure("client_timeout", response) from None
    except ConnectionResetError:  # aiohttp's ClientConnectionResetError: the client went away
        _abort(request)
        raise ClientFailure("client_disconnect", response) from None
    except UpstreamError as error:
        log.warning("request %s: backend %s %s after the response started; aborting the client connection",
                    request_id, backend, error.message)
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise MidStreamFailure(error.kind, response) from None
    await response.write_eof()
    return response


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if name.lower() == "content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

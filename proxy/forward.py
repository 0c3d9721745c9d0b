"""Forwarding one request to an upstream and relaying the answer, streaming when it is large.

Small bodies (a declared length up to SMALL_BODY_BYTES) are read whole, which is cheaper than
streaming them; anything larger or of unknown length is streamed chunk by chunk in both directions
with backpressure, so a 50 MB upload or download never sits in memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from multidict import CIMultiDict

from controlplane.config.model import UpstreamSpec
from proxy.headers import BACKEND_HEADER, REQUEST_ID, client_response_headers
from proxy.tasks import TaskPool
from proxy.upstream import UpstreamConnection, UpstreamError, UpstreamPool

log = logging.getLogger(__name__)

SMALL_BODY_BYTES: Final = 64 * 1024
CHUNK_BYTES: Final = 64 * 1024
_NO_BODY_STATUSES: Final = frozenset({204, 304})
# Methods safe to send again when a reused keep-alive connection died before any answer. A payment
# creation (POST) is never sent twice.
_RETRYABLE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_STATUS_OF_KIND: Final = {"connect_timeout": 504, "pool_timeout": 504, "timeout": 504}


class UpstreamPools:
    """One connection pool per upstream spec; pools of replaced specs close after a grace period."""

    def __init__(self, tasks: TaskPool) -> None:
        self._pools: dict[UpstreamSpec, UpstreamPool] = {}
        self._tasks = tasks

    def pool_for(self, spec: UpstreamSpec) -> UpstreamPool:
        pool = self._pools.get(spec)
        if pool is None:
            pool = self._pools[spec] = UpstreamPool(spec)
        return pool

    def keep_only(self, specs: set[UpstreamSpec]) -> None:
        """After a reload: retire pools of specs no longer in use, once in-flight work is done."""
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


class MidStreamFailure(Exception):
    """The upstream failed after the response head was sent; the client connection was aborted."""

    def __init__(self, kind: str, response: web.StreamResponse) -> None:
        super().__init__(kind)
        self.kind = kind
        self.response = response


def error_response(status: int, error: str, message: str, request_id: str,
                   backend: str | None = None) -> web.Response:
    headers = CIMultiDict({REQUEST_ID: request_id})
    if backend is not None:
        headers[BACKEND_HEADER] = backend
    body = json.dumps({"success": False, "error": error, "message": message, "requestId": request_id})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


def _failure(error: UpstreamError, backend: str) -> UpstreamFailure:
    status = _STATUS_OF_KIND.get(error.kind, 502)
    return UpstreamFailure(error.kind, status, f"backend {backend} {error.message}")


def body_framing(request: web.Request) -> tuple[bytes, bool]:
    """The framing header for the body sent upstream, and whether it is chunked."""
    if not request.body_exists:
        return b"", False
    length = request.content_length
    if length is not None:
        return b"Content-Length: %d\r\n" % length, False
    return b"Transfer-Encoding: chunked\r\n", True


async def forward(
    request: web.Request,
    pool: UpstreamPool,
    head: bytes,
    *,
    chunked: bool,
    request_id: str,
    backend: str,
    capture: Capture | None = None,
) -> web.StreamResponse:
    """Send the request upstream and relay the answer; raise UpstreamFailure before any byte is sent.

    Errors after the response head went out cannot become a 5xx any more: the client connection is
    aborted instead, so a truncated body is never mistaken for a complete one.
    """
    small_body: bytes | None = None
    streaming = False
    if request.body_exists:
        length = request.content_length
        # A mirrored body is read whole (the mirror bounded its size): the shadow copy needs it too.
        if length is not None and (length <= SMALL_BODY_BYTES or capture is not None):
            small_body = await request.read()
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
                await conn.send_body(request.content.iter_chunked(CHUNK_BYTES), chunked=chunked)
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
        return await _relay(request, conn, request_id=request_id, backend=backend, capture=capture)
    finally:
        # Reused only after a complete exchange; a cancelled or failed one closes the connection.
        pool.release(conn, reusable=conn.finish())


async def _relay(
    request: web.Request, conn: UpstreamConnection, *, request_id: str, backend: str, capture: Capture | None
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
            await response.write(chunk)
    except UpstreamError as error:
        log.warning("request %s: backend %s %s after the response started; aborting the client connection",
                    request_id, backend, error.message)
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise MidStreamFailure(error.kind, response) from None
    await response.write_eof()
    return response


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if name.lower() == "content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

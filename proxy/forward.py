"""Streaming forwarding of one request to an upstream, and the upstream connection pools.

Small bodies (up to SMALL_BODY_BYTES with a declared length) are read whole, which is cheaper than
streaming them; anything larger or of unknown length is streamed chunk by chunk in both directions,
so a 50 MB upload or download never sits in memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Final

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from controlplane.config.model import UpstreamSpec
from proxy.headers import BACKEND_HEADER, REQUEST_ID, client_response_headers
from proxy.tasks import TaskPool

log = logging.getLogger(__name__)

SMALL_BODY_BYTES: Final = 64 * 1024
CHUNK_BYTES: Final = 64 * 1024
# aiohttp adds these when absent; a proxy must send only what the client sent.
_SKIP_AUTO_HEADERS: Final = frozenset({"User-Agent", "Accept", "Accept-Encoding", "Content-Type"})
_NO_BODY_STATUSES: Final = frozenset({204, 304})


class UpstreamPools:
    """One keep-alive client session per upstream spec; replaced specs are closed after a grace."""

    def __init__(self, tasks: TaskPool) -> None:
        self._sessions: dict[UpstreamSpec, aiohttp.ClientSession] = {}
        self._tasks = tasks

    def session_for(self, spec: UpstreamSpec) -> aiohttp.ClientSession:
        session = self._sessions.get(spec)
        if session is None:
            connector = aiohttp.TCPConnector(limit=spec.pool_size, limit_per_host=0,
                                             keepalive_timeout=30.0, ttl_dns_cache=60)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=spec.connect_timeout_s,
                                            sock_read=spec.read_timeout_s)
            session = aiohttp.ClientSession(connector=connector, timeout=timeout,
                                            auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
                                            skip_auto_headers=_SKIP_AUTO_HEADERS)
            self._sessions[spec] = session
        return session

    def keep_only(self, specs: set[UpstreamSpec]) -> None:
        """After a reload: close sessions of specs no longer in use, once in-flight work is done."""
        for spec in list(self._sessions):
            if spec not in specs:
                session = self._sessions.pop(spec)
                grace_s = spec.read_timeout_s + spec.connect_timeout_s
                if not self._tasks.spawn(_close_later(session, grace_s), name=f"retire-{spec.name}"):
                    self._tasks.spawn(session.close(), name=f"close-{spec.name}")

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


async def _close_later(session: aiohttp.ClientSession, grace_s: float) -> None:
    try:
        await asyncio.sleep(grace_s)
    finally:
        await session.close()


@dataclass(frozen=True, slots=True)
class UpstreamFailure(Exception):
    """The upstream could not produce a response head; becomes a 502 or 504 for the client."""

    kind: str  # connect | connect_timeout | timeout | reset | bad_response
    status: int
    message: str


def error_response(status: int, error: str, message: str, request_id: str,
                   backend: str | None = None) -> web.Response:
    headers = CIMultiDict({REQUEST_ID: request_id})
    if backend is not None:
        headers[BACKEND_HEADER] = backend
    body = json.dumps({"success": False, "error": error, "message": message, "requestId": request_id})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


def _failure(exc: BaseException, backend: str) -> UpstreamFailure:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamFailure("connect_timeout", 504,
                               f"backend {backend} did not accept the connection in time")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamFailure("connect", 502, f"backend {backend} refused or could not be reached")
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamFailure("timeout", 504, f"backend {backend} did not answer in time")
    if isinstance(exc, aiohttp.ClientResponseError):
        return UpstreamFailure("bad_response", 502, f"backend {backend} sent an invalid response")
    return UpstreamFailure("reset", 502, f"backend {backend} closed the connection")


async def forward(
    request: web.Request,
    session: aiohttp.ClientSession,
    url: URL,
    headers: CIMultiDict[str],
    *,
    request_id: str,
    backend: str,
) -> web.StreamResponse:
    """Send the request upstream and relay the answer; raise UpstreamFailure before any byte is sent.

    Errors after the response head went out cannot become a 5xx any more: the client connection is
    aborted instead, so a truncated body is never mistaken for a complete one.
    """
    body: bytes | aiohttp.StreamReader | None = None
    if request.body_exists:
        length = request.content_length
        if length is not None and length <= SMALL_BODY_BYTES:
            body = await request.read()
        else:
            body = request.content
    try:
        upstream_cm = session.request(request.method, url, headers=headers, data=body,
                                      allow_redirects=False, compress=None)
        upstream = await upstream_cm.__aenter__()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise _failure(exc, backend) from exc
    try:
        return await _relay(request, upstream, request_id=request_id, backend=backend)
    finally:
        await upstream_cm.__aexit__(None, None, None)


async def _relay(
    request: web.Request, upstream: aiohttp.ClientResponse, *, request_id: str, backend: str
) -> web.StreamResponse:
    out_headers = client_response_headers(upstream.headers, request_id=request_id, backend=backend)
    length = upstream.content_length
    out_headers.popall("Content-Length", None)
    no_body = request.method == "HEAD" or upstream.status in _NO_BODY_STATUSES
    if not no_body and length is not None and length <= SMALL_BODY_BYTES:
        try:
            payload = await upstream.read()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _failure(exc, backend) from exc
        return web.Response(status=upstream.status, reason=upstream.reason, headers=out_headers,
                            body=payload)
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=out_headers)
    if length is not None:
        response.content_length = length
    await response.prepare(request)
    if no_body:
        await response.write_eof()
        return response
    try:
        async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
            await response.write(chunk)
    except (TimeoutError, aiohttp.ClientError) as exc:
        failure = _failure(exc, backend)
        log.warning("request %s: %s after the response started; aborting the client connection",
                    request_id, failure.message)
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise MidStreamFailure(failure.kind, response) from exc
    await response.write_eof()
    return response


class MidStreamFailure(Exception):
    """The upstream failed after the response head was sent; the client connection was aborted."""

    def __init__(self, kind: str, response: web.StreamResponse) -> None:
        super().__init__(kind)
        self.kind = kind
        self.response = response

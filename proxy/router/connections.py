"""What one router worker grants a client connection: a cap on how many are open, and a deadline
for each request head.

Without them a client that opens connections and dribbles request heads (or opens and idles) keeps
every one of them: aiohttp times out neither a head nor, by default, an idle keep-alive connection
for an hour, and once the worker's descriptors run out every client of every tenant, and /healthz,
is refused. The idle timeout is aiohttp's own `keepalive_timeout` (handler_args()); the rest is
here, in a RequestHandler that adds a few attribute checks to data_received:

- past `max_connections` open connections a new one is answered 503 and closed at once;
- a head must be complete `header_timeout_s` after its first byte arrived on an idle connection.
  Pending heads sit in one set that a single per-worker timer sweeps (no timer per request).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from controlplane.config.model import ServerLimits
from proxy.router.metrics import ProxyMetrics

_REFUSAL_LINGER_S: Final = 1.0
_REFUSAL_BODY: Final = b'{"success": false, "error": "overloaded", "message": "too many open connections"}'
_REFUSAL: Final = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY))


def handler_args(limits: ServerLimits) -> dict[str, Any]:
    """aiohttp's handler settings the limits set (the idle keep-alive timeout)."""
    return {"keepalive_timeout": limits.keepalive_timeout_s}


class ConnectionGuard:
    """The open client connections of one worker's listener and the request heads still arriving."""

    def __init__(self, limits: ServerLimits, metrics: ProxyMetrics) -> None:
        self.limits = limits
        self.metrics = metrics
        self.open = 0
        self.pending: dict[GuardedHandler, float] = {}  # handler -> when its head's first byte came
        self._sweep: asyncio.TimerHandle | None = None

    def factory(self, server: web.Server) -> Callable[[], GuardedHandler]:
        """The protocol factory the listening socket creates each connection's handler with: what
        web.Server() would make, with the same settings (those its runner and app were given)."""
        loop = asyncio.get_running_loop()
        kwargs = server._kwargs
        return lambda: GuardedHandler(self, server, loop=loop, **kwargs)

    def head_started(self, handler: GuardedHandler, now: float) -> None:
        self.pending[handler] = now
        if self._sweep is None:
            self._schedule()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweep = loop.call_later(max(0.05, self.limits.header_timeout_s / 4), self._sweep_heads)

    def _sweep_heads(self) -> None:
        self._sweep = None
        now = asyncio.get_running_loop().time()
        timeout_s = self.limits.header_timeout_s
        for handler, since in list(self.pending.items()):
            if not handler.awaiting_head():
                del self.pending[handler]
            elif now - since >= timeout_s:
                del self.pending[handler]
                self.metrics.connections_closed.labels("header_timeout").inc()
                handler.force_close()  # aiohttp's own close of an idle handler
                transport = handler.transport
                if transport is not None:
                    transport.close()
        if self.pending:
            self._schedule()

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None


class GuardedHandler(RequestHandler):
    __slots__ = ("_guard", "_head_since", "_refused")

    def __init__(self, guard: ConnectionGuard, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._head_since = 0.0  # 0: no head pending
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        if guard.open >= guard.limits.max_connections:
            self._refused = True
            self._force_close = True  # aiohttp reads nothing more from it
            self._head_since = -1.0  # never counted as a pending head
            guard.metrics.connections_closed.labels("max_connections").inc()
            transport = cast(asyncio.Transport, transport)  # uvloop's is one without the subclass
            # Answer, stop sending, and close when the client does (or in a second): closing with its
            # request unread would reset the connection before the client reads the answer.
            transport.write(_REFUSAL)
            if transport.can_write_eof():
                transport.write_eof()
            self._loop.call_later(_REFUSAL_LINGER_S, transport.close)
            return
        guard.open += 1
        guard.metrics.client_connections.inc()
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        guard = self._guard
        guard.open -= 1
        guard.metrics.client_connections.dec()
        if self._head_since:
            guard.pending.pop(self, None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._head_since and self._current_request is None and not self._messages:
            # The first byte of a head on an idle connection: its deadline starts now.
            self._head_since = self._loop.time()
            self._guard.head_started(self, self._head_since)
        super().data_received(data)
        if self._head_since and (self._messages or self._current_request is not None):
            self._head_since = 0.0
            self._guard.pending.pop(self, None)

    def awaiting_head(self) -> bool:
        """Still idle with a head begun: no request is queued or being handled."""
        if self._head_since and self._current_request is None and not self._messages:
            return True
        self._head_since = 0.0
        return False

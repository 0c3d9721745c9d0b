"""Shadow copies to one backend over a few pipelined HTTP/1.1 connections, driven by callbacks.

A shadow copy is the router's own extra work, so it is made as cheap as the protocol allows: the
copies queued while the event loop handles one batch of client requests leave in one write on one
connection (HTTP/1.1 pipelining), answers are parsed in order by httptools as they arrive, and
each completed answer is handed to a callback. No task, future or timer exists per copy.

Bounds: at most `queue_size` copies wait to be sent (more are refused, and the caller counts the
drop), at most `concurrency` are in flight, over at most `concurrency / 2` connections (a new one
is opened while every open one is busy, so a slow answer holds up only what is pipelined behind it
on its own connection); each carries at most DEPTH at once and MAX_REQUESTS_PER_CONNECTION in all.
A connection whose oldest copy has waited `timeout_s` is closed and its copies fail as timeouts; a
backend that closes a connection fails the copies it had not answered (never re-sent: it may have
run them), except after an answer that announced the close, when the copies behind it were never
read and go back to the queue. Idle connections are closed after IDLE_TIMEOUT_S, before a
backend's own keep-alive timeout can race a new batch.

A connection is owed exactly as many answers as it has copies in flight (core.py counts them). One
more, or a byte of one while none is owed, breaks it: its copies fail, those whose answers came
in the same packet too (an answer in excess means answers may have shifted by one), and none is
ever compared against an answer that may be another's.

Only requests whose answer the parser can frame alone are pipelined: not HEAD (its answer has
headers for a body that never comes); the mirror never sends HEAD here.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from controlplane.config.model import ShadowLimits, UpstreamSpec
from proxy.http1.core import IDLE_TIMEOUT_S, Endpoint, ResponseParser, UpstreamError, connect
from proxy.serving.tasks import TaskPool

log = logging.getLogger(__name__)

DEPTH: Final = 16
MAX_REQUESTS_PER_CONNECTION: Final = 500  # under nginx's keepalive_requests default (1000)
MAX_ANSWER_BYTES: Final = 1024 * 1024
RETRY_CONNECT_S: Final = 1.0  # after a refused connection, copies fail at once for this long

# Called with (status, body, seconds from send to answer), or on failure (0, b"", kind) with kind
# "timeout" or "error".
Done = Callable[[int, bytes, float | str], None]


@dataclass(slots=True)
class Copy:
    head: bytes
    body: bytes | None
    done: Done
    sent_at: float = 0.0


class PipelinedConnection(ResponseParser):
    def __init__(self, channel: ShadowChannel) -> None:
        super().__init__()
        self.channel = channel
        self.inflight: collections.deque[Copy] = collections.deque()
        self.sent = 0
        self.retiring = False
        self.closed = False
        self.timed_out = False
        self.idle_since = time.monotonic()
        self._chunks: list[bytes] = []
        self._size = 0
        # Answers parsed from the packet at hand, handed over once the whole packet proved sound.
        self._answers: list[tuple[Copy, int, bytes]] = []

    def send(self, copies: list[Copy]) -> None:
        assert self.transport is not None
        now = time.monotonic()
        parts = []
        for copy in copies:
            copy.sent_at = now
            parts.append(copy.head)
            if copy.body:
                parts.append(copy.body)
        self.inflight.extend(copies)
        self.owed += len(copies)
        self.sent += len(copies)
        if self.sent >= MAX_REQUESTS_PER_CONNECTION:
            self.retiring = True
        self.transport.write(b"".join(parts))

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return  # aborted: what is still in flight fails when the connection is gone
        if self.feed(data) and self._answers:
            answers, self._answers = self._answers, []
            for copy, status, body in answers:
                self.channel.answered(copy, status, body)

    # -- the core's hooks -------------------------------------------------------------------------

    def on_body(self, body: bytes) -> None:
        if self.closed:
            return
        self._size += len(body)
        if self._size > MAX_ANSWER_BYTES:
            self.abort()
            return
        self._chunks.append(body)

    def _on_answer(self) -> None:
        if self.closed:
            return  # aborted mid-answer (too large): never compare a partial answer
        copy = self.inflight.popleft()
        self._answers.append((copy, self.status, b"".join(self._chunks)))
        self._chunks, self._size = [], 0
        if not self.keep_alive:
            self.retiring = True
            # The backend announced the close: what was sent behind this answer was never read,
            # and nothing more is owed.
            self.channel.requeue(self.inflight)
            self.inflight = collections.deque()
            self.owed = 0
        if not self.inflight:
            self.idle_since = time.monotonic()

    def _on_broken(self, message: str) -> None:
        # Nonsense, or more answers than copies: whichever copy an answer in this packet seemed to
        # belong to, it cannot be trusted. They fail with the rest when the connection is gone.
        self.inflight.extendleft(copy for copy, _, _ in reversed(self._answers))
        self._answers = []
        self.abort()

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        failed, self.inflight = self.inflight, collections.deque()
        self.channel.lost(self, failed)

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True  # nothing more is sent or read; connection_lost fails what is in flight
            self.transport.abort()


class ShadowChannel:
    """Every shadow copy to one backend."""

    def __init__(self, spec: UpstreamSpec, limits: ShadowLimits, *, tls: ssl.SSLContext | None = None) -> None:
        """`tls`: the context an https backend is verified with, if not the system default."""
        self.spec = spec
        self.loop = asyncio.get_running_loop()
        self.endpoint = Endpoint.of(spec.url, tls=tls)
        self._pending: collections.deque[Copy] = collections.deque()
        self._conns: list[PipelinedConnection] = []
        self._connecting = TaskPool(f"shadow-connect-{spec.name}", limit=1)  # one attempt at a time
        self._inflight = 0
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._down_until = 0.0
        self.configure(limits)

    def configure(self, limits: ShadowLimits) -> None:
        """New bounds from a reloaded routing file; copies already queued or in flight keep going."""
        self.limits = limits
        self._max_connections = max(1, limits.concurrency // 2)

    def retire(self) -> None:
        """The backend left the routing file: take no more copies, close once the last can be answered."""
        self._closed = True
        self._pending.clear()
        self.loop.call_later(self.limits.timeout_s, self.close)

    def offer(self, head: bytes, body: bytes | None, done: Done) -> bool:
        """Queue a copy; False (nothing queued) when the queue is full or the channel closed."""
        if self._closed or len(self._pending) >= self.limits.queue_size:
            return False
        if self._down_until and time.monotonic() < self._down_until:
            self._deliver(Copy(head, body, done), 0, b"", "error")  # refused a moment ago: no new attempt yet
            return True
        self._pending.append(Copy(head, body, done))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)  # after this loop pass: one write for its whole batch
        return True

    def requeue(self, copies: collections.deque[Copy]) -> None:
        self._inflight -= len(copies)
        self._pending.extendleft(reversed(copies))
        self._schedule_flush()

    def answered(self, copy: Copy, status: int, body: bytes) -> None:
        self._inflight -= 1
        self._deliver(copy, status, body, time.monotonic() - copy.sent_at)
        self._schedule_flush()

    def lost(self, conn: PipelinedConnection, failed: collections.deque[Copy]) -> None:
        if conn in self._conns:
            self._conns.remove(conn)
        self._inflight -= len(failed)
        kind = "timeout" if conn.timed_out else "error"
        for copy in failed:
            self._deliver(copy, 0, b"", kind)
        self._schedule_flush()

    def _deliver(self, copy: Copy, status: int, body: bytes, outcome: float | str) -> None:
        try:
            copy.done(status, body, outcome)
        except Exception:
            log.exception("shadow comparison failed")

    def _schedule_flush(self) -> None:
        if self._pending and not self._flush_scheduled and not self._closed:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        now = time.monotonic()
        while self._pending and self._inflight < self.limits.concurrency:
            conn = self._usable(now)
            # Another connection while every open one is busy: a slow answer holds up only the copies
            # pipelined behind it on its own connection. Meanwhile the batch still leaves on the best.
            if (conn is None or conn.inflight) and len(self._conns) < self._max_connections \
                    and not self._connecting:
                self._connecting.spawn(self._connect(), name=self.spec.url)
            if conn is None:
                return
            room = min(DEPTH - len(conn.inflight), self.limits.concurrency - self._inflight,
                       MAX_REQUESTS_PER_CONNECTION - conn.sent)
            batch = [self._pending.popleft() for _ in range(min(room, len(self._pending)))]
            self._inflight += len(batch)
            conn.send(batch)
        if self._inflight and self._timer is None:
            self._timer = self.loop.call_later(min(self.limits.timeout_s, 0.5), self._check_timeouts)

    def _usable(self, now: float) -> PipelinedConnection | None:
        best = None
        for conn in list(self._conns):
            if conn.closed or conn.retiring:
                if not conn.inflight:
                    self._conns.remove(conn)
                    conn.abort()
                continue
            if not conn.inflight and now - conn.idle_since > IDLE_TIMEOUT_S:
                self._conns.remove(conn)  # the backend may be closing it right now
                conn.abort()
                continue
            if len(conn.inflight) < DEPTH and (best is None or len(conn.inflight) < len(best.inflight)):
                best = conn
        return best

    async def _connect(self) -> None:
        try:
            conn = await connect(self.endpoint, lambda: PipelinedConnection(self), self.spec.connect_timeout_s)
        except UpstreamError:
            # Nothing can be sent: what waits fails now rather than ageing in the queue, and for a
            # moment new copies fail at once instead of each costing a connection attempt.
            self._down_until = time.monotonic() + RETRY_CONNECT_S
            failed, self._pending = self._pending, collections.deque()
            for copy in failed:
                self._deliver(copy, 0, b"", "error")
            return
        if self._closed:
            conn.abort()
            return
        self._conns.append(conn)
        self._flush()

    def _check_timeouts(self) -> None:
        self._timer = None
        now = time.monotonic()
        for conn in list(self._conns):
            if conn.inflight and now - conn.inflight[0].sent_at > self.limits.timeout_s:
                conn.timed_out = True
                conn.abort()
        if self._inflight:
            self._timer = self.loop.call_later(min(self.limits.timeout_s, 0.5), self._check_timeouts)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._connecting.cancel()
        for conn in self._conns:
            conn.abort()
        self._pending.clear()

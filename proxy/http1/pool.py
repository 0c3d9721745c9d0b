"""A lean HTTP/1.1 client for one upstream: keep-alive connections over asyncio.Protocol, responses
parsed by httptools (the shared core in core.py).

The router forwards every request it serves, so what a general-purpose client spends per request
(building request objects, merging headers, cookie jars, tracing hooks) is the router's overhead.
Here a request is one pre-built head written to a pooled socket, and the response is parsed in C
straight into the fields the router relays.

- Backpressure both ways: uploads wait for the socket to drain; a response body is buffered up to
  HIGH_WATER_BYTES, then reading from the backend pauses until the client catches up.
- Read timeout = no byte from the backend for `read_timeout_s` (while the router is not the one
  holding back), with one timer per request that is re-armed lazily rather than on every packet.
- Idle connections are retired after IDLE_TIMEOUT_S, below Node.js's default keep-alive of 5 s, so
  a reused connection is not one the backend is closing at that moment.
- One answer is owed per exchange: bytes after it (in its packet or later) close the connection.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterable
from typing import Final

from controlplane.config.model import UpstreamSpec
from proxy.http1.core import IDLE_TIMEOUT_S, Endpoint, HeadCollector, UpstreamError, connect

__all__ = ["UpstreamConnection", "UpstreamError", "UpstreamPool"]

HIGH_WATER_BYTES: Final = 256 * 1024
LOW_WATER_BYTES: Final = 64 * 1024


class UpstreamConnection(HeadCollector):
    """One keep-alive connection carrying one exchange at a time."""

    def __init__(self, pool: UpstreamPool) -> None:
        super().__init__()
        self._pool = pool
        self._loop = pool.loop
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._reading_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._read_timeout_s = 0.0
        self._last_activity = 0.0
        self._active = False
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self.error: UpstreamError | None = None
        self.status = 0
        self.reason = ""
        self.headers = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.received_any = False
        self._request_sent = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        # Bytes while no answer is owed (on an idle connection, or after the answer) break it: the
        # core refuses to parse them, so they never become the next request's answer.
        self._last_activity = self._loop.time()
        self.received_any = True
        self.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_timer()
        if self._active and not self.complete:
            self._fail(UpstreamError("reset", "closed the connection"))
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)
        self._pool._lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- the core's hooks -------------------------------------------------------------------------

    def _on_head(self) -> None:
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER_BYTES and not self._reading_paused and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake()

    def _on_answer(self) -> None:
        self.complete = True
        self._cancel_timer()
        self._wake()

    def _on_broken(self, message: str) -> None:
        # After a complete answer this only keeps the connection from being reused.
        self._fail(UpstreamError("bad_response", message))

    # -- the exchange -----------------------------------------------------------------------------

    def begin(
        self, head: bytes, body: bytes | None, read_timeout_s: float, *, streaming: bool = False
    ) -> None:
        """Start an exchange: write the head (and a whole small body) and arm the read timeout.

        With `streaming`, the body follows through send_body()."""
        assert self.transport is not None
        self._reset_exchange()
        self._active = True
        self.owed = 1
        self._read_timeout_s = read_timeout_s
        self._last_activity = self._loop.time()
        self._timer = self._loop.call_at(self._last_activity + read_timeout_s, self._on_timer)
        self.transport.write(head + body if body else head)
        self._request_sent = not streaming

    async def send_body(self, chunks: AsyncIterable[bytes], *, chunked: bool) -> None:
        """Stream a request body, waiting for the socket to drain; stops early if the backend failed."""
        assert self.transport is not None
        async for chunk in chunks:
            if self.error is not None or self.closed:
                return  # the backend already answered or went away; its response says what happened
            if not chunk:
                continue
            if chunked:
                self.transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            else:
                self.transport.write(chunk)
            self._last_activity = self._loop.time()
            if self._write_paused:
                self._drain = self._loop.create_future()
                await self._drain
        if chunked and not self.closed:
            self.transport.write(b"0\r\n\r\n")
        self._request_sent = True

    async def read_head(self) -> None:
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    async def read_chunk(self) -> bytes | None:
        """The next piece of the response body, or None once it is complete."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._reading_paused and self._buffered < LOW_WATER_BYTES and self.transport is not None:
                    self._reading_paused = False
                    self._last_activity = self._loop.time()
                    self.transport.resume_reading()
                return chunk
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            await self._wait()

    async def read_all(self) -> bytes:
        parts = []
        while (chunk := await self.read_chunk()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    def finish(self) -> bool:
        """End the exchange; True if the connection can carry another one."""
        self._active = False
        self._cancel_timer()
        return (self.complete and self._request_sent and self.keep_alive and self.error is None
                and not self.closed)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    # -- internals --------------------------------------------------------------------------------

    async def _wait(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        self._cancel_timer()
        self._wake()
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self.complete or self.closed or not self._active:
            return
        now = self._loop.time()
        deadline = self._last_activity + self._read_timeout_s
        if self._reading_paused:  # the client is slow, not the backend
            deadline = now + self._read_timeout_s
        if now < deadline:
            self._timer = self._loop.call_at(deadline, self._on_timer)
            return
        self._fail(UpstreamError("timeout", "did not answer in time"))


async def _wait_for(waiter: asyncio.Future[UpstreamConnection | None]) -> UpstreamConnection | None:
    return await waiter


class UpstreamPool:
    """At most `pool_size` connections to one upstream; idle ones are reused most-recent first."""

    def __init__(self, spec: UpstreamSpec, *, idle_timeout_s: float = IDLE_TIMEOUT_S,
                 tls: ssl.SSLContext | None = None) -> None:
        """`tls`: the context an https upstream is verified with, if not the system default."""
        self.spec = spec
        self.loop = asyncio.get_running_loop()
        self.idle_timeout_s = idle_timeout_s
        self.endpoint = Endpoint.of(spec.url, tls=tls)
        self._idle: list[UpstreamConnection] = []
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[UpstreamConnection | None]] = collections.deque()
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def acquire(self, *, fresh: bool = False) -> tuple[UpstreamConnection, bool]:
        """A connection and whether it was reused. Raises UpstreamError if none can be had in time."""
        if not fresh:
            now = self.loop.time()
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed and now - conn.idle_since < self.idle_timeout_s:
                    return conn, True
                conn.close()
        if self._open < self.spec.pool_size:
            return await self._connect(), False
        waiter: asyncio.Future[UpstreamConnection | None] = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            handed = await asyncio.wait_for(_wait_for(waiter), self.spec.connect_timeout_s)
        except TimeoutError:
            message = f"all {self.spec.pool_size} connections stayed busy"
            raise UpstreamError("pool_timeout", message) from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and (late := waiter.result()) is not None:
                self.release(late, reusable=True)  # handed over just as we were cancelled
            raise
        if handed is None:  # a slot was freed rather than a connection handed over
            return await self._connect(), False
        return handed, True

    async def _connect(self) -> UpstreamConnection:
        self._open += 1
        try:
            return await connect(self.endpoint, lambda: UpstreamConnection(self), self.spec.connect_timeout_s)
        except BaseException:
            self._slot_freed()
            raise

    def release(self, conn: UpstreamConnection, *, reusable: bool) -> None:
        if not reusable or conn.closed or self._closed:
            conn.close()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = self.loop.time()
        self._idle.append(conn)

    def _lost(self, conn: UpstreamConnection) -> None:
        if conn in self._idle:
            self._idle.remove(conn)
        self._slot_freed()

    def _slot_freed(self) -> None:
        self._open -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close idle connections now; busy ones close when their exchange ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        await asyncio.sleep(0)

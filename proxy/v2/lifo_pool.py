"""A connection pool that lends the most recently returned idle connection first (LIFO).

psycopg_pool lends its connections oldest-first, so at low concurrency a worker's requests go round
all its connections, each a different PostgreSQL backend whose caches went cold meanwhile. Here a
few idle connections are kept in front of the pool, newest on top, and lent first: a worker's
reads keep landing on the same one or two warm backends, and skip the pool's lock and queue.

Only the pool's public `getconn`/`putconn`/`resize`/`close` are overridden, so `pool.connection()`
and every other user of the pool go through the same front, and the pool's guarantees stay:
- A connection is kept in front only when it comes back idle (no transaction open, so no
  transaction-local `app.tenant_id` can remain) and not closed or broken; any other goes to the
  pool's own putconn, which rolls it back or replaces it.
- Nobody waits while a connection sits in front: while a caller waits in the pool, every returned
  connection goes to the pool, which hands it to the waiter.
- When every connection is lent, callers wait here, and a connection that comes back idle is handed
  straight to the first of them. Through the pool's own queue (its lock, condition and return path)
  a status read cost a third more CPU: 329 against 250 µs with wrk's 32 connections on a worker's 10
  (bench/v2.py, one worker). Whenever a connection goes to the pool instead (in any other state,
  past its hold, or for callers already waiting in the pool) or the pool grows, every caller waiting
  here moves to the pool's own queue, counted as waiting there from that moment, so nobody waits
  here while the pool has or makes a connection. A caller that times out or is cancelled as a
  connection is handed to it gives that connection back; `max_waiting` counts both queues.
- One returned that is not lent (another pool's, or one returned twice) is refused, as the pool
  refuses it, and counts nothing. (A second return after the connection was handed to the next
  caller cannot be told from that caller's own: every caller here returns each connection once.)
- The pool still sees each connection regularly (expiry by max_lifetime, drain, resizing): one out of
  it for `hold_s` goes back to it when returned, and one idle in front for `idle_s` is given back on
  the next getconn. `close()` gives every kept connection back before closing the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any, Final, Generic, TypeVar

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout, TooManyRequests

ConnT = TypeVar("ConnT", bound=AsyncConnection[Any])

FRONT_SIZE: Final = 2  # enough for a worker's usual concurrency of one-statement reads
HOLD_S: Final = 30.0  # a connection goes back through the pool at least this often
IDLE_S: Final = 5.0  # one unused in front for this long goes back to the pool (its max_idle then applies)


class LifoConnectionPool(AsyncConnectionPool[ConnT], Generic[ConnT]):
    def __init__(self, *args: Any, front_size: int = FRONT_SIZE, hold_s: float = HOLD_S, idle_s: float = IDLE_S,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._front_size = front_size
        self._hold_s = hold_s
        self._idle_s = idle_s
        self._front: list[tuple[ConnT, float]] = []  # (connection, when it was put here), newest last
        self._out: dict[ConnT, float] = {}  # connections out of the pool, and since when
        self._lent: set[ConnT] = set()  # connections a caller holds now (not those kept in front)
        self._pool_waiters = 0  # callers waiting in the pool's own queue, or sent there
        self._waiters: deque[asyncio.Future[ConnT | None]] = deque()  # callers waiting here, first first

    async def getconn(self, timeout: float | None = None) -> ConnT:  # noqa: ASYNC109 (the pool's signature)
        while self._front:
            conn, kept_at = self._front.pop()
            if time.monotonic() - kept_at < self._idle_s and not conn.closed:
                self._lent.add(conn)
                return conn
            await self._to_pool(conn)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        if len(self._lent) >= self.max_size and not self.closed:  # every connection is lent: wait here
            if self.max_waiting and len(self._waiters) + self._pool_waiters >= self.max_waiting:
                raise TooManyRequests(f"the pool {self.name!r} has already {self.max_waiting} requests waiting")
            handed = await self._wait_here(deadline)
            if handed is not None:
                return handed  # still in self._lent: it went from one caller to the next
        else:
            self._pool_waiters += 1  # (a caller sent from here was counted when it was sent)
        try:
            conn = await super().getconn(max(0.0, deadline - time.monotonic()))
        finally:
            self._pool_waiters -= 1
        self._lent.add(conn)
        self._out[conn] = time.monotonic()
        return conn

    async def putconn(self, conn: ConnT) -> None:
        if conn not in self._lent:
            raise ValueError(f"can't return connection to pool {self.name!r}: it is not lent (returned twice, or "
                             f"not from this pool): {conn}")
        self._lent.discard(conn)
        now = time.monotonic()
        if self._front and now - self._front[0][1] >= self._idle_s:  # the oldest kept, unused meanwhile
            await self._to_pool(self._front.pop(0)[0])
        out_since = self._out.get(conn)
        if (out_since is not None and now - out_since < self._hold_s and self._pool_waiters == 0
                and not self.closed and not conn.closed and conn.pgconn.transaction_status == TransactionStatus.IDLE):
            if self._hand_over(conn):
                self._lent.add(conn)
                return
            if len(self._front) < self._front_size:
                self._front.append((conn, now))
                return
        await self._to_pool(conn)
        self._send_to_pool()  # it has this connection (or, broken, its replacement) for them now

    async def resize(self, min_size: int, max_size: int | None = None) -> None:
        await super().resize(min_size, max_size)
        self._send_to_pool()  # grown, it makes connections: its own queue gets them

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (the pool's signature)
        while self._front:
            await self._to_pool(self._front.pop()[0])
        self._send_to_pool()  # each asks the closed pool, which refuses
        await super().close(timeout)

    async def _wait_here(self, deadline: float) -> ConnT | None:
        """The next connection returned idle, or None: ask the pool (counted in its waiters already)."""
        waiter: asyncio.Future[ConnT | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await waiter
        except TimeoutError:
            await self._given_up(waiter)
            raise PoolTimeout(f"couldn't get a connection from {self.name!r}: every one stayed lent") from None
        except BaseException:
            await self._given_up(waiter)
            raise

    async def _given_up(self, waiter: asyncio.Future[ConnT | None]) -> None:
        """The caller stopped waiting: it leaves the queue, and a connection handed to it meanwhile is
        given back, not lost."""
        if not waiter.done() or waiter.cancelled():  # still queued (cancelling the task cancels its wait)
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            waiter.cancel()
            return
        handed = waiter.result()
        if handed is None:
            self._pool_waiters -= 1  # sent to the pool, it never asked
        else:
            await self.putconn(handed)

    def _next_waiter(self) -> asyncio.Future[ConnT | None] | None:
        """The first caller still waiting here, out of the queue (one cancelled meanwhile is skipped)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    def _hand_over(self, conn: ConnT) -> bool:
        """Give `conn` to the first caller still waiting here."""
        waiter = self._next_waiter()
        if waiter is not None:
            waiter.set_result(conn)
        return waiter is not None

    def _send_to_pool(self) -> None:
        """Every caller waiting here goes to wait in the pool's own queue."""
        while (waiter := self._next_waiter()) is not None:
            waiter.set_result(None)
            self._pool_waiters += 1

    async def _to_pool(self, conn: ConnT) -> None:
        self._out.pop(conn, None)
        await super().putconn(conn)

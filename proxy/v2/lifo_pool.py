"""A connection pool that lends the most recently returned idle connection first (LIFO).

psycopg_pool lends its connections oldest-first, so at low concurrency a worker's requests go round
all its connections, each a different PostgreSQL backend whose caches went cold meanwhile. Here a
few idle connections are kept in front of the pool, newest on top, and lent first: a worker's
reads keep landing on the same one or two warm backends, and skip the pool's lock and queue.

Only the pool's public `getconn`/`putconn`/`close` are overridden, so `pool.connection()` and every
other user of the pool go through the same front, and the pool's guarantees stay:
- A connection is kept in front only when it comes back idle (no transaction open, so no
  transaction-local `app.tenant_id` can remain) and not closed or broken; any other goes to the
  pool's own putconn, which rolls it back or replaces it.
- Nobody waits while a connection sits in front: while a caller waits in the pool, every returned
  connection goes to the pool, which hands it to the waiter.
- When every connection is lent, callers wait here, first come first served, and a connection that
  comes back idle is handed straight to the first of them (the pool's own queue, its lock, condition
  and return path cost about a tenth of a status read's CPU under load). One that comes back in any
  other state goes to the pool, and a waiter here is woken to ask the pool, so nobody waits here
  while the pool has a connection. A waiter that times out or is cancelled after a connection was
  handed to it gives that connection back.
- The pool still sees each connection regularly (expiry by max_lifetime, drain, resizing): one out of
  it for `hold_s` goes back to it when returned, and one idle in front for `idle_s` is given back on
  the next getconn. `close()` gives every kept connection back before closing the pool.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Final, Generic, TypeVar

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool, PoolTimeout

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
        self._lent = 0  # connections lent to callers now (not those kept in front)
        self._pool_waiters = 0
        self._waiters: deque[asyncio.Future[ConnT | None]] = deque()  # callers waiting here, first first

    async def getconn(self, timeout: float | None = None) -> ConnT:  # noqa: ASYNC109 (the pool's signature)
        while self._front:
            conn, kept_at = self._front.pop()
            if time.monotonic() - kept_at < self._idle_s and not conn.closed:
                self._lent += 1
                return conn
            await self._to_pool(conn)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        if self._lent >= self.max_size and not self.closed:  # every connection is lent: wait for one here
            handed = await self._wait_here(deadline)
            if handed is not None:
                return handed  # still counted as lent
        self._pool_waiters += 1
        try:
            conn = await super().getconn(max(0.0, deadline - time.monotonic()))
        finally:
            self._pool_waiters -= 1
        self._lent += 1
        self._out[conn] = time.monotonic()
        return conn

    async def putconn(self, conn: ConnT) -> None:
        self._lent -= 1
        now = time.monotonic()
        if self._front and now - self._front[0][1] >= self._idle_s:  # the oldest kept, unused meanwhile
            await self._to_pool(self._front.pop(0)[0])
        out_since = self._out.get(conn)
        if (out_since is not None and now - out_since < self._hold_s and self._pool_waiters == 0
                and not self.closed and not conn.closed and conn.pgconn.transaction_status == TransactionStatus.IDLE):
            if self._hand_over(conn):
                self._lent += 1
                return
            if len(self._front) < self._front_size:
                self._front.append((conn, now))
                return
        await self._to_pool(conn)
        self._hand_over(None)  # a caller waiting here asks the pool, which has this connection now

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (the pool's signature)
        while self._front:
            await self._to_pool(self._front.pop()[0])
        while self._hand_over(None):  # each asks the closed pool, which refuses
            pass
        await super().close(timeout)

    async def _wait_here(self, deadline: float) -> ConnT | None:
        """The next connection returned idle, or None when one went to the pool instead (ask it)."""
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
        """The caller stopped waiting: what was handed to it meanwhile goes to the next one, not lost."""
        if not waiter.done():
            waiter.cancel()  # skipped by _hand_over
        elif not waiter.cancelled():
            handed = waiter.result()
            if handed is None:
                self._hand_over(None)  # the pool's connection is for the next caller waiting here
            else:
                await self.putconn(handed)

    def _hand_over(self, conn: ConnT | None) -> bool:
        """Give `conn` (None: the news that the pool has one) to the first caller still waiting here."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    async def _to_pool(self, conn: ConnT) -> None:
        self._out.pop(conn, None)
        await super().putconn(conn)

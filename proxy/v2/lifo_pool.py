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
- The pool still sees each connection regularly (expiry by max_lifetime, drain, resizing): one out of
  it for `hold_s` goes back to it when returned, and one idle in front for `idle_s` is given back on
  the next getconn. `close()` gives every kept connection back before closing the pool.
"""

from __future__ import annotations

import time
from typing import Any, Final, Generic, TypeVar

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool

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
        self._pool_waiters = 0

    async def getconn(self, timeout: float | None = None) -> ConnT:  # noqa: ASYNC109 (the pool's signature)
        while self._front:
            conn, kept_at = self._front.pop()
            if time.monotonic() - kept_at < self._idle_s and not conn.closed:
                return conn
            await self._to_pool(conn)
        self._pool_waiters += 1
        try:
            conn = await super().getconn(timeout)
        finally:
            self._pool_waiters -= 1
        self._out[conn] = time.monotonic()
        return conn

    async def putconn(self, conn: ConnT) -> None:
        now = time.monotonic()
        if self._front and now - self._front[0][1] >= self._idle_s:  # the oldest kept, unused meanwhile
            await self._to_pool(self._front.pop(0)[0])
        out_since = self._out.get(conn)
        if (out_since is not None and now - out_since < self._hold_s and len(self._front) < self._front_size
                and self._pool_waiters == 0 and not self.closed and not conn.closed
                and conn.pgconn.transaction_status == TransactionStatus.IDLE):
            self._front.append((conn, now))
            return
        await self._to_pool(conn)

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (the pool's signature)
        while self._front:
            await self._to_pool(self._front.pop()[0])
        await super().close(timeout)

    async def _to_pool(self, conn: ConnT) -> None:
        self._out.pop(conn, None)
        await super().putconn(conn)

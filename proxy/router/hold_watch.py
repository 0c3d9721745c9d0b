"""How a router worker learns of write holds: it registers itself in the state database on every
poll (the cutover waits for every worker registered as alive), reads the open holds and the ones it
holds, begins holding a tenant's writes before it confirms the hold, and ends a hold the cutover
released. A LISTEN connection wakes the poll the moment the cutover NOTIFYs; without it (the
connection broke) the poll runs every `poll_s`, and every HOLDING_POLL_S while the worker holds a
tenant or cannot listen: a hold's confirmation and release are then never later than that (the
cutover gives the routers 90% of hold_s, 1.8 s by default, to confirm). Both connections send TCP
keepalives, so one a network partition cut is noticed and reopened within seconds.

A worker confirms a hold only once the writes of the tenant it was forwarding when it began to hold
have finished (proxy/router/holds.py): the poll then confirms it at once (the hold wakes it).
The SQL lives in controlplane/state/holds.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from typing import Any, Final

import psycopg
from psycopg import sql

from controlplane.config.model import BACKENDS, Backend
from controlplane.state import holds as hold_sql
from controlplane.state.schema import query
from proxy.router.holds import WriteHolds
from proxy.router.metrics import ProxyMetrics

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 3
HOLDING_POLL_S: Final = 0.2


class HoldWatcher:
    def __init__(self, holds: WriteHolds, metrics: ProxyMetrics, database_url: str, schema: str,
                 poll_s: float) -> None:
        self.holds = holds
        self.metrics = metrics
        self.database_url = database_url
        self.schema = schema
        self.poll_s = poll_s
        host = socket.gethostname()[:100]
        self.host, self.pid = host, os.getpid()
        # Several routers may share a host and even a process (tests): the token tells them apart.
        self.worker = f"{host}:{self.pid}:{secrets.token_hex(4)}"
        # Proves to the state database that this worker is the one registered under its name (only
        # its SHA-256 is stored there); never logged.
        self._secret = secrets.token_hex(16)
        self.wake = asyncio.Event()
        holds.on_drained = self.wake.set  # a hold waiting for its in-flight writes may be confirmed now
        self.listening = False
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._failing = False

    async def start(self) -> None:
        """One poll before the worker serves: a worker started during a hold holds from its first
        request on. Bounded: a state database that does not answer delays the start by seconds."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S + 2):
                await self.poll()
        except (psycopg.Error, OSError, TimeoutError) as exc:
            await self._drop_connection()
            log.warning("write holds: cannot read the state database at start (%s); polling every %g s",
                        type(exc).__name__, self.poll_s)

    async def listen(self) -> None:
        """Keep one LISTEN connection; each notification wakes the poll at once."""
        while True:
            try:
                async with await self._connect() as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(hold_sql.channel(self.schema))))
                    self.listening = True
                    self.wake.set()  # a hold may have begun while nobody listened
                    async for _ in conn.notifies():
                        self.wake.set()
            except (psycopg.Error, OSError) as exc:
                log.warning("write holds: cannot listen (%s); polling every %g s", type(exc).__name__, self.poll_s)
            self.listening = False
            await asyncio.sleep(self.poll_s)

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(max(self.poll_s * 2, 5.0)):
                    await self.poll()
            except (psycopg.Error, OSError, TimeoutError) as exc:
                await self._drop_connection()
                if not self._failing:
                    log.warning("write holds: cannot read the state database (%s); holds this worker holds "
                                "end on its own clock", type(exc).__name__)
                self._failing = True
            else:
                if self._failing:
                    log.info("write holds: reading the state database again")
                self._failing = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.interval_s())
            self.wake.clear()

    def interval_s(self) -> float:
        """Until the next poll: shorter while this worker holds a tenant or has no LISTEN connection
        (not while the state database fails: the holds then end on this worker's own clock)."""
        if not self._failing and (self.holds.hold_ids or not self.listening):
            return min(self.poll_s, HOLDING_POLL_S)
        return self.poll_s

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        # libpq's TCP keepalives: a peer silent for 5 s is probed every 2 s; 3 unanswered probes drop it.
        return await psycopg.AsyncConnection.connect(
            self.database_url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True,
            keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3)

    async def poll(self) -> None:
        """Register, read the holds, begin the new ones (then confirm), end the released ones."""
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._conn = await self._connect()
        cursor = await conn.execute(query(hold_sql.REGISTER, self.schema),
                                    (self.worker, self.host, self.pid, self.poll_s, self._secret))
        registered = await cursor.fetchone()
        if registered is None or registered[0] is not True:
            # Another worker holds this name (a random token makes that all but impossible): draw anew.
            log.error("write holds: the registration %s belongs to another worker; registering under a new name",
                      self.worker)
            self.worker = f"{self.host}:{self.pid}:{secrets.token_hex(4)}"
            return
        mine = self.holds.hold_ids
        cursor = await conn.execute(query(hold_sql.SELECT_HOLDS, self.schema), (mine,))
        rows = await cursor.fetchall()
        seen = set()
        for hold_id, tenant, hold_s, release_to, released in rows:
            seen.add(hold_id)
            if released:
                # Not awaited: the release may wait for the table (up to the hold's bound), and
                # ending is a task of its own that the poll's timeout cannot cut short.
                backend: Backend | None = release_to if release_to in BACKENDS else None
                self.holds.finish(hold_id, backend, "released")
            elif hold_id not in self.holds.ended:
                self.holds.begin(hold_id, str(tenant), float(hold_s))  # held before it is confirmed
                # Once the writes already in flight finished; again on every poll while it is open: a
                # confirmation lost with a connection is made good.
                if self.holds.confirmable(hold_id):
                    await conn.execute(query(hold_sql.CONFIRM, self.schema), (hold_id, self.worker, self._secret))
        for hold_id in mine:
            if hold_id not in seen:  # gone from the database: nobody will release it
                self.holds.finish(hold_id, None, "expired")
        self.holds.forget_ended(keep=seen)

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    async def close(self) -> None:
        """Unregister (best effort: a worker that vanished without it ages out of being alive)."""
        with contextlib.suppress(psycopg.Error, OSError, TimeoutError):
            async with asyncio.timeout(2.0), await self._connect() as conn:
                await conn.execute(query(hold_sql.UNREGISTER, self.schema), (self.worker, self._secret))
        await self._drop_connection()

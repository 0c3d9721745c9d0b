"""Write holds: the only place the SQL of `write_holds`, `hold_confirmations` and `router_workers` lives.

The cutover (control role, sync psycopg: HoldStore) inserts a hold and NOTIFYs the routers, waits
until every router worker alive in `router_workers` has confirmed it, and later releases it to the
backend the held writes go to. Each router worker (router role, async psycopg:
proxy/router/hold_watch.py) registers itself on every poll with REGISTER, reads the holds with
SELECT_HOLDS, and confirms with CONFIRM once it holds the tenant's writes; it LISTENs on
`channel(schema)` so that it sees a hold within milliseconds, and polls in case it missed one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg

from controlplane.state.schema import query

# A worker counts as alive (and must confirm a hold) when it registered within this many of its own
# polls, or within MIN_ALIVE_S, whichever is longer: a worker stopped a moment ago is still alive,
# and the cutover aborts rather than flip while it might forward writes.
ALIVE_POLLS: Final = 3
MIN_ALIVE_S: Final = 10.0
MAX_HOLD_S: Final = 30.0  # the migration's CHECK, and what a router clamps a hold to
# A worker seen within this long but not alive now is "lost": stopped without unregistering (a crash,
# SIGKILL, a frozen process) or cut off from the state database while it may still forward writes.
# The cutover refuses while one is (`--override hold`); a clean shutdown unregisters, and after
# this long a lost worker no longer counts (it has been down or unable to hold for 10 minutes).
RECENT_WORKER_S: Final = 600.0
STALE_WORKER_S: Final = 24 * 3600  # registrations older than this are dropped when a hold is created


def channel(schema: str) -> str:
    """The NOTIFY channel of a state schema (its name is an identifier: at most 63 bytes)."""
    return f"{schema}_write_holds"[:63]


# -- what the router runs (async psycopg; proxy/router/hold_watch.py) ---------------------------

# The router role reaches router_workers and hold_confirmations only through the migration's SECURITY
# DEFINER functions, keyed by the worker's own secret: it cannot act as another worker.
# (worker, host, pid, poll_s, secret) -> false when another worker (another secret) has the name
REGISTER: Final = "SELECT {s}.register_router_worker(%s, %s, %s, %s, %s)"
# (worker, secret)
UNREGISTER: Final = "SELECT {s}.unregister_router_worker(%s, %s)"
# Open holds, and the ones this worker holds (by id: it must see when they are released).
SELECT_HOLDS: Final = ("SELECT id, tenant, hold_s, release_to, released_at IS NOT NULL FROM {s}.write_holds "
                       "WHERE (released_at IS NULL AND expires_at > now()) OR id = ANY(%s)")
# (hold_id, worker, secret)
CONFIRM: Final = "SELECT {s}.confirm_write_hold(%s, %s, %s)"

# -- what the cutover runs (sync) ---------------------------------------------------------------

_ABANDON: Final = ("UPDATE {s}.write_holds SET released_at = now() WHERE tenant = %s AND released_at IS NULL "
                   "RETURNING id")
_CREATE: Final = ("INSERT INTO {s}.write_holds (tenant, cutover_id, hold_s, expires_at) "
                  "VALUES (%s, %s, %s, clock_timestamp() + make_interval(secs => %s)) RETURNING id")
_RELEASE: Final = ("UPDATE {s}.write_holds SET release_to = %s, released_at = now() WHERE tenant = %s "
                   "AND released_at IS NULL AND (%s::bigint IS NULL OR id = %s) RETURNING id, created_at")
_ALIVE: Final = ("SELECT worker, host, pid FROM {s}.router_workers "
                 "WHERE last_seen > now() - make_interval(secs => greatest(poll_s * %s, %s))")
_LOST: Final = ("SELECT worker, host, pid, last_seen FROM {s}.router_workers "
                "WHERE last_seen > now() - make_interval(secs => %s) "
                "AND last_seen <= now() - make_interval(secs => greatest(poll_s * %s, %s)) ORDER BY last_seen DESC")
_UNCONFIRMED: Final = _ALIVE + (" AND NOT EXISTS (SELECT 1 FROM {s}.hold_confirmations c "
                                "WHERE c.hold_id = %s AND c.worker = router_workers.worker) ORDER BY worker")
_PRUNE: Final = "DELETE FROM {s}.router_workers WHERE last_seen < now() - make_interval(secs => %s)"
_OPEN: Final = ("SELECT id FROM {s}.write_holds WHERE tenant = %s AND released_at IS NULL "
                "AND expires_at > now() ORDER BY id")
_NOTIFY: Final = "SELECT pg_notify(%s, %s)"


@dataclass(frozen=True)
class RouterWorker:
    worker: str  # host:pid:token
    host: str
    pid: int
    last_seen: datetime | None = None

    def __str__(self) -> str:
        seen = f", last seen {self.last_seen.isoformat(timespec='seconds')}" if self.last_seen else ""
        return f"worker {self.pid} on {self.host} ({self.worker}{seen})"


@dataclass(frozen=True)
class Hold:
    id: int
    tenant: str
    hold_s: float
    started_s: float  # time.monotonic() before the hold was written: the bound counts from here

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_s


class HoldStore:
    def __init__(self, database_url: str, schema: str) -> None:
        self.database_url = database_url
        self.schema = schema

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.database_url, autocommit=True)

    def alive_workers(self) -> list[RouterWorker]:
        with self.connect() as conn:
            rows = conn.execute(query(_ALIVE, self.schema), (ALIVE_POLLS, MIN_ALIVE_S)).fetchall()
        return [RouterWorker(*row) for row in rows]

    def lost_workers(self) -> list[RouterWorker]:
        """Workers seen within RECENT_WORKER_S that are not alive now (they stopped without
        unregistering, or cannot reach the state database), latest first."""
        with self.connect() as conn:
            rows = conn.execute(query(_LOST, self.schema), (RECENT_WORKER_S, ALIVE_POLLS, MIN_ALIVE_S)).fetchall()
        return [RouterWorker(*row) for row in rows]

    def create(self, tenant: str, hold_s: float, cutover_id: int | None) -> Hold:
        """A new hold of the tenant's writes, announced to the routers. A hold of the tenant still
        open (a cutover that died) is closed first: the routers let it expire on their own."""
        hold_s = min(hold_s, MAX_HOLD_S)
        with self.connect() as conn:
            conn.execute(query(_PRUNE, self.schema), (STALE_WORKER_S,))
            conn.execute(query(_ABANDON, self.schema), (tenant,))
            started = time.monotonic()
            row = conn.execute(query(_CREATE, self.schema), (tenant, cutover_id, hold_s, hold_s)).fetchone()
            assert row is not None  # INSERT ... RETURNING
            conn.execute(_NOTIFY, (channel(self.schema), str(row[0])))
        return Hold(int(row[0]), tenant, hold_s, started)

    def unconfirmed(self, conn: psycopg.Connection[Any], hold: Hold) -> list[RouterWorker]:
        """The workers alive now that have not confirmed the hold (on the caller's connection: the
        cutover asks many times a second while it waits)."""
        rows = conn.execute(query(_UNCONFIRMED, self.schema), (ALIVE_POLLS, MIN_ALIVE_S, hold.id)).fetchall()
        return [RouterWorker(*row) for row in rows]

    def open_holds(self, tenant: str) -> list[int]:
        """The tenant's holds nobody released that have not expired yet (by the database's clock)."""
        with self.connect() as conn:
            return [int(r[0]) for r in conn.execute(query(_OPEN, self.schema), (tenant,)).fetchall()]

    def release(self, tenant: str, release_to: str, hold_id: int | None = None) -> list[int]:
        """Release the tenant's open hold (`hold_id`, or any) to `release_to`; the ids released."""
        with self.connect() as conn:
            rows = conn.execute(query(_RELEASE, self.schema), (release_to, tenant, hold_id, hold_id)).fetchall()
            if rows:
                conn.execute(_NOTIFY, (channel(self.schema), ",".join(str(r[0]) for r in rows)))
        return [int(r[0]) for r in rows]

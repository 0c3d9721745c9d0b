"""The router's view of rollback locks: read from the state database every LOCK_POLL_S, applied to
routing at once, and kept as last known when the database cannot be read (a router never forgets
a rollback because the database blinked, and never invents one)."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import psycopg

from controlplane.config.locks import Lock
from controlplane.state.locks import LOCK_POLL_S, SELECT_LOCKS, locks_from_rows
from controlplane.state.rollouts import SELECT_ROLLOUT_VIEWS, RolloutView, rollout_views_from_rows
from controlplane.state.schema import query
from proxy.router.metrics import ProxyMetrics
from proxy.router.state import RouterState

log = logging.getLogger(__name__)

__all__ = ["FIRST_READ_TIMEOUT_S", "LOCK_POLL_S", "read_first", "read_state", "refresh_locks", "watch_locks"]

# Before serving, a (re)started worker waits at most this long for the locks (then serves without them).
FIRST_READ_TIMEOUT_S: Final = 3.0


async def read_state(database_url: str, schema: str,
                     timeout_s: float) -> tuple[dict[str, Lock], dict[str, RolloutView]]:
    """Locks (which route) and rollouts (what the metrics say about each tenant's move), with the
    state database's own queries (controlplane/state/). TimeoutError past `timeout_s`, the
    connection closed whichever step it was waiting in (a test counts the sockets)."""
    async with asyncio.timeout(timeout_s), await psycopg.AsyncConnection.connect(
            database_url, connect_timeout=3, autocommit=True) as conn:
        cursor = await conn.execute(query(SELECT_LOCKS, schema))
        locks = locks_from_rows(await cursor.fetchall())
        cursor = await conn.execute(query(SELECT_ROLLOUT_VIEWS, schema))
        rollouts = rollout_views_from_rows(await cursor.fetchall())
    return locks, rollouts


async def refresh_locks(state: RouterState, metrics: ProxyMetrics, database_url: str, schema: str,
                        timeout_s: float) -> Exception | None:
    """One read of the locks and rollouts, applied to routing at once; the error when the database
    could not be read (the last known locks stay)."""
    try:
        locks, rollouts = await read_state(database_url, schema, timeout_s=timeout_s)
    except (psycopg.Error, OSError, TimeoutError) as exc:
        metrics.locks_refresh_success.set(0)
        return exc
    metrics.locks_refresh_success.set(1)
    state.apply_locks(locks)
    metrics.rollouts_seen(rollouts)
    return None


async def read_first(state: RouterState, metrics: ProxyMetrics, database_url: str, schema: str,
                     timeout_s: float = FIRST_READ_TIMEOUT_S) -> None:
    """Before serving: the locks as the database has them now, so a worker that restarts never routes a
    rolled-back tenant to v2 until its first poll. Bounded: a database that is down delays start-up only
    this long, and the poll takes over."""
    if (exc := await refresh_locks(state, metrics, database_url, schema, timeout_s)) is not None:
        log.warning("cannot read rollback locks before serving (%s): serving without them until the state "
                    "database answers", type(exc).__name__)


async def watch_locks(state: RouterState, metrics: ProxyMetrics, database_url: str, schema: str,
                      interval_s: float = LOCK_POLL_S) -> None:
    """Every `interval_s`, from one interval after start (read_first did the first read)."""
    failing = False
    while True:
        await asyncio.sleep(interval_s)
        exc = await refresh_locks(state, metrics, database_url, schema, interval_s * 2)
        if exc is not None and not failing:
            log.warning("cannot read rollback locks (%s); keeping the last known ones", type(exc).__name__)
        elif exc is None and failing:
            log.info("reading rollback locks again")
        failing = exc is not None

"""The router's view of rollback locks: read from the state database every LOCK_POLL_S, applied to
routing at once, and kept as last known when the database cannot be read (a router never forgets
a rollback because the database blinked, and never invents one)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg import sql

from controlplane.config.locks import Lock
from proxy.metrics import ProxyMetrics
from proxy.state import RouterState

log = logging.getLogger(__name__)

LOCK_POLL_S: Final = 2.0  # every router applies a rollback within this (the promise is 5 s)


@dataclass(frozen=True, slots=True)
class RolloutView:
    phase: str
    soak_started_s: float
    last_action: str | None
    last_decision_s: float | None


async def read_state(database_url: str, schema: str) -> tuple[dict[str, Lock], dict[str, RolloutView]]:
    """Locks (which route) and rollouts (what the metrics say about each tenant's move)."""
    s = sql.Identifier(schema)
    async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=3, autocommit=True) as conn:
        cursor = await conn.execute(sql.SQL(
            "SELECT tenant, backend, declared_backend, reason, actor, created_at FROM {}.rollout_locks").format(s))
        locks = {row[0]: Lock(*row) for row in await cursor.fetchall()}
        cursor = await conn.execute(sql.SQL(
            "SELECT r.tenant, r.phase, extract(epoch FROM r.soak_started_at), d.action, extract(epoch FROM d.at) "
            "FROM {0}.rollouts r LEFT JOIN LATERAL (SELECT action, at FROM {0}.rollout_decisions "
            "WHERE tenant = r.tenant AND NOT dry_run ORDER BY at DESC LIMIT 1) d ON true").format(s))
        rollouts = {row[0]: RolloutView(row[1], float(row[2]), row[3], float(row[4]) if row[4] is not None else None)
                    for row in await cursor.fetchall()}
    return locks, rollouts


async def watch_locks(state: RouterState, metrics: ProxyMetrics, database_url: str, schema: str,
                      interval_s: float = LOCK_POLL_S) -> None:
    failing = False
    while True:
        try:
            locks, rollouts = await asyncio.wait_for(read_state(database_url, schema), timeout=interval_s * 2)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            metrics.locks_refresh_success.set(0)
            if not failing:
                log.warning("cannot read rollback locks (%s); keeping the last known ones", type(exc).__name__)
            failing = True
        else:
            metrics.locks_refresh_success.set(1)
            if failing:
                log.info("reading rollback locks again")
            failing = False
            state.apply_locks(locks)
            metrics.rollouts_seen(rollouts)
        await asyncio.sleep(interval_s)

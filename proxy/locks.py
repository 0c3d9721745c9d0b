"""The router's view of rollback locks: read from the state database every LOCK_POLL_S, applied to
routing at once, and kept as last known when the database cannot be read (a router never forgets
a rollback because the database blinked, and never invents one)."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import psycopg
from psycopg import sql

from controlplane.config.locks import Lock
from proxy.metrics import ProxyMetrics
from proxy.state import RouterState

log = logging.getLogger(__name__)

LOCK_POLL_S: Final = 2.0  # every router applies a rollback within this (the promise is 5 s)


async def read_locks(database_url: str, schema: str) -> dict[str, Lock]:
    async with await psycopg.AsyncConnection.connect(database_url, connect_timeout=3, autocommit=True) as conn:
        cursor = await conn.execute(sql.SQL(
            "SELECT tenant, backend, declared_backend, reason, actor, created_at FROM {}.rollout_locks"
        ).format(sql.Identifier(schema)))
        return {row[0]: Lock(*row) for row in await cursor.fetchall()}


async def watch_locks(state: RouterState, metrics: ProxyMetrics, database_url: str, schema: str,
                      interval_s: float = LOCK_POLL_S) -> None:
    failing = False
    while True:
        try:
            locks = await asyncio.wait_for(read_locks(database_url, schema), timeout=interval_s * 2)
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
        await asyncio.sleep(interval_s)

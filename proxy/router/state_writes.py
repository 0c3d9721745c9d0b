"""How the router's writers reach the state database: each keeps its results in memory (bounded by
itself) and writes them in one batch every interval, off the request path. A database that fails is
logged once when it starts failing and once when it is back; the writer's results wait in memory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)


def state_pool(database_url: str) -> AsyncConnectionPool:
    """A small pool, opened later (`open(wait=False)`): the router starts whether the database is up or not."""
    return AsyncConnectionPool(database_url, min_size=1, max_size=2, open=False, timeout=5.0,
                               kwargs={"autocommit": True})


async def write_periodically(what: str, interval_s: float, write: Callable[[], Awaitable[None]]) -> None:
    """Run `write()` every `interval_s`, forever; its failures are logged, never raised."""
    failing = False
    while True:
        await asyncio.sleep(interval_s)
        try:
            await write()
        except (psycopg.Error, OSError, TimeoutError) as exc:
            if not failing:
                log.warning("%s: cannot write (%s); keeping results in memory", what, type(exc).__name__)
            failing = True
        else:
            if failing:
                log.info("%s: writing again", what)
            failing = False


async def last_write(what: str, pool: AsyncConnectionPool, write: Callable[[], Awaitable[None]],
                     pending: Callable[[], int]) -> None:
    """On shutdown: one last batch (within 5 s), then the pool closes."""
    try:
        await asyncio.wait_for(write(), timeout=5)
    except (TimeoutError, psycopg.Error, OSError):
        log.warning("%s: last write failed; %d result(s) not written", what, pending())
    await pool.close()

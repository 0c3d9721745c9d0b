"""v2's pool lends the most recently returned idle connection first, and keeps the pool's guarantees:
nothing carried from one request into the next, no caller left waiting while a connection sits idle
in front, broken connections replaced, every connection closed with the pool."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from psycopg_pool import PoolClosed, PoolTimeout, TooManyRequests

from proxy.v2.db import make_pool
from proxy.v2.lifo_pool import LifoConnectionPool
from tests.conftest import Database


async def _backend(conn: psycopg.AsyncConnection[dict[str, int]]) -> int:
    row = await (await conn.execute("SELECT pg_backend_pid() AS pid")).fetchone()
    assert row is not None
    return row["pid"]


async def test_the_most_recently_returned_connection_is_lent_first(database: Database) -> None:
    pool = make_pool(database.app_url, database.layout.schema, min_size=3, max_size=3)
    await pool.open(wait=True)
    try:
        first, second = await pool.getconn(), await pool.getconn()
        first_pid, second_pid = await _backend(first), await _backend(second)
        await pool.putconn(first)
        await pool.putconn(second)
        for _ in range(5):  # always the newest, never round the pool
            async with pool.connection() as conn:
                assert await _backend(conn) == second_pid
        both = await pool.getconn(), await pool.getconn()
        assert {await _backend(conn) for conn in both} == {first_pid, second_pid}
        for conn in both:
            await pool.putconn(conn)
    finally:
        await pool.close()
    assert first.closed and second.closed


async def test_a_connection_returned_inside_a_transaction_goes_back_through_the_pool(database: Database) -> None:
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open(wait=True)
    try:
        conn = await pool.getconn()
        await conn.execute("BEGIN")
        await conn.execute("SELECT set_config('app.tenant_id', gen_random_uuid()::text, true)")
        await pool.putconn(conn)  # not idle: the pool rolls it back, it is never kept in front
        async with pool.connection() as again:
            assert again.info.transaction_status == TransactionStatus.IDLE
            row = await (await again.execute("SELECT current_setting('app.tenant_id', true) AS s")).fetchone()
            assert row in ({"s": ""}, {"s": None})
    finally:
        await pool.close()


async def _waiting(pool: LifoConnectionPool[Any]) -> asyncio.Task[Any]:
    """A caller asking for a connection while every one is lent; returns once it waits (the bound
    only stops a broken pool hanging the test)."""
    task = asyncio.create_task(pool.getconn(timeout=15.0))
    for _ in range(3):  # its first step runs up to the wait: no I/O before it
        await asyncio.sleep(0)
    assert not task.done()
    return task


async def test_a_caller_waiting_while_every_connection_is_lent_gets_the_next_one_returned(database: Database) -> None:
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open(wait=True)
    try:
        held = await pool.getconn()
        waiter = await _waiting(pool)
        await pool.putconn(held)  # idle: handed straight to the caller waiting
        got = await waiter
        assert got is held
        assert pool.get_stats()["requests_num"] == 1  # only the first caller went through the pool
        await pool.putconn(got)
    finally:
        await pool.close()


async def test_callers_waiting_are_served_first_come_first_served_and_none_is_left_behind(
        database: Database) -> None:
    pool = make_pool(database.app_url, database.layout.schema, max_size=2)
    await pool.open(wait=True)
    served: list[int] = []

    async def one(n: int) -> None:
        async with pool.connection(timeout=15.0) as conn:
            served.append(n)  # when it got the connection, before any I/O
            await conn.execute("SELECT 1")

    try:
        both = [await pool.getconn(), await pool.getconn()]
        callers = []
        for n in range(12):
            callers.append(asyncio.create_task(one(n)))
            await asyncio.sleep(0)
        for _ in range(3):
            await asyncio.sleep(0)
        for conn in both:
            await pool.putconn(conn)
        await asyncio.gather(*callers)
        assert served == list(range(12))
        again = [await pool.getconn(timeout=15.0), await pool.getconn(timeout=15.0)]  # both lendable again
        for conn in again:
            await pool.putconn(conn)
    finally:
        await pool.close()


async def test_a_connection_returned_in_a_transaction_reaches_a_waiting_caller_clean_through_the_pool(
        database: Database) -> None:
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open(wait=True)
    try:
        held = await pool.getconn()
        waiter = await _waiting(pool)
        await held.execute("BEGIN")
        await held.execute("SELECT set_config('app.tenant_id', gen_random_uuid()::text, true)")
        await pool.putconn(held)  # not idle: never handed over as it is; the pool rolls it back
        got = await waiter
        assert got.info.transaction_status == TransactionStatus.IDLE
        row = await (await got.execute("SELECT current_setting('app.tenant_id', true) AS s")).fetchone()
        assert row in ({"s": ""}, {"s": None})
        await pool.putconn(got)
    finally:
        await pool.close()


async def test_a_caller_that_gives_up_waiting_strands_no_connection(database: Database) -> None:
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open(wait=True)
    try:
        held = await pool.getconn()
        with pytest.raises(PoolTimeout, match="every one stayed lent"):
            await pool.getconn(timeout=0.05)
        # Handed over in the same turn of the loop as the caller is cancelled: given back, not lost.
        waiter = await _waiting(pool)
        await pool.putconn(held)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        async with pool.connection(timeout=15.0) as again:
            assert again is held
    finally:
        await pool.close()


async def test_a_caller_waiting_when_the_pool_closes_is_refused(database: Database) -> None:
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open(wait=True)
    held = await pool.getconn()
    waiter = await _waiting(pool)
    await pool.close()
    with pytest.raises(PoolClosed):
        await waiter
    await pool.putconn(held)
    assert held.closed


async def test_a_broken_connection_is_replaced_not_lent_again(database: Database) -> None:
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            pid = await _backend(conn)
        with psycopg.connect(database.admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        conn = await pool.getconn()  # the one kept in front: its server has gone
        with pytest.raises(psycopg.OperationalError):
            await conn.execute("SELECT 1")
        await pool.putconn(conn)
        async with pool.connection(timeout=15.0) as fresh:
            assert await _backend(fresh) != pid
    finally:
        await pool.close()


async def test_a_connection_idle_in_front_goes_back_to_the_pool(database: Database) -> None:
    pool: LifoConnectionPool[psycopg.AsyncConnection[Any]] = LifoConnectionPool(
        database.app_url, min_size=1, max_size=1, open=False, idle_s=0.0)  # every kept one is idle too long
    await pool.open(wait=True)
    try:
        async with pool.connection():
            pass
        assert pool.get_stats()["pool_available"] == 0  # kept in front, out of the pool
        async with pool.connection():
            pass
        assert pool.get_stats()["requests_num"] == 2  # the second came through the pool
    finally:
        await pool.close()


async def test_the_oldest_kept_connection_goes_back_when_unused_and_none_is_held_past_its_hold(
        database: Database) -> None:
    sweeping: LifoConnectionPool[psycopg.AsyncConnection[Any]] = LifoConnectionPool(
        database.app_url, min_size=2, max_size=2, open=False, idle_s=0.0)
    await sweeping.open(wait=True)
    try:
        both = await sweeping.getconn(), await sweeping.getconn()
        for conn in both:
            await sweeping.putconn(conn)  # the second return finds the first unused since: to the pool
        assert sweeping.get_stats()["pool_available"] == 1
    finally:
        await sweeping.close()
    holding: LifoConnectionPool[psycopg.AsyncConnection[Any]] = LifoConnectionPool(
        database.app_url, min_size=1, max_size=1, open=False, hold_s=0.0)
    await holding.open(wait=True)
    try:
        async with holding.connection():
            pass
        assert holding.get_stats()["pool_available"] == 1  # out for its whole hold: back through the pool
    finally:
        await holding.close()


async def test_a_caller_sent_to_the_pool_is_not_passed_over_for_the_front(database: Database) -> None:
    pool = make_pool(database.app_url, database.layout.schema, min_size=2, max_size=2)
    await pool.open(wait=True)
    try:
        first, second = await pool.getconn(), await pool.getconn()
        waiter = await _waiting(pool)
        await first.execute("BEGIN")
        await pool.putconn(first)  # not idle: to the pool, and the caller waiting goes to wait there
        newcomer = await pool.getconn()  # takes it from the pool before that caller asks
        await pool.putconn(second)  # idle: for the caller waiting in the pool, not kept in front
        assert await waiter is second
        for conn in (second, newcomer):
            await pool.putconn(conn)
    finally:
        await pool.close()


async def test_callers_waiting_are_all_served_by_the_replacement_of_a_broken_connection(database: Database) -> None:
    replacement = asyncio.Event()
    opened = 0

    async def configure(_: psycopg.AsyncConnection[Any]) -> None:
        nonlocal opened
        opened += 1
        if opened > 1:  # the replacement connects only once the first caller has given up
            await replacement.wait()

    pool: LifoConnectionPool[psycopg.AsyncConnection[Any]] = LifoConnectionPool(
        database.app_url, min_size=1, max_size=1, open=False, configure=configure)
    await pool.open(wait=True)
    try:
        broken = await pool.getconn()
        gives_up, stays = await _waiting(pool), await _waiting(pool)
        await broken.close()
        await pool.putconn(broken)  # discarded; the pool makes another
        gives_up.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gives_up
        replacement.set()
        await pool.putconn(await stays)
    finally:
        await pool.close()


async def test_a_pool_grown_while_callers_wait_serves_them(database: Database) -> None:
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open(wait=True)
    try:
        held = await pool.getconn()
        waiter = await _waiting(pool)
        await pool.resize(2, 2)
        await pool.putconn(await waiter)
        await pool.putconn(held)
    finally:
        await pool.close()


async def test_max_waiting_counts_the_callers_waiting_in_front(database: Database) -> None:
    pool: LifoConnectionPool[psycopg.AsyncConnection[Any]] = LifoConnectionPool(
        database.app_url, min_size=1, max_size=1, max_waiting=1, open=False)
    await pool.open(wait=True)
    try:
        held = await pool.getconn()
        with pytest.raises(PoolTimeout):
            await pool.getconn(timeout=0.01)  # gave up: no longer counted as waiting
        waiter = await _waiting(pool)
        with pytest.raises(TooManyRequests):
            await pool.getconn(timeout=15.0)
        await pool.putconn(held)
        await pool.putconn(await waiter)
    finally:
        await pool.close()


async def test_a_connection_not_lent_is_refused_and_nothing_is_miscounted(database: Database) -> None:
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open(wait=True)
    try:
        async with await psycopg.AsyncConnection.connect(database.app_url) as foreign:
            with pytest.raises(ValueError, match="not lent"):
                await pool.putconn(foreign)  # type: ignore[arg-type]
        kept = await pool.getconn()
        await pool.putconn(kept)  # kept in front
        with pytest.raises(ValueError, match="not lent"):
            await pool.putconn(kept)  # a second return would lend it twice
        held = await pool.getconn()
        waiter = await _waiting(pool)  # every connection is lent: still counted so
        await pool.putconn(held)
        assert await waiter is held
        await pool.putconn(held)
    finally:
        await pool.close()

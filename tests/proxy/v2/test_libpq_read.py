"""The status read sent through libpq directly: what psycopg would otherwise guarantee is kept (a
call interrupted midway never leaves its connection to the pool, an error from the server leaves it
usable, a vanished prepared statement is prepared again, a NUL never cuts an order id short)."""

from __future__ import annotations

import asyncio
import secrets
import uuid

import psycopg
import pytest

from proxy.v2.db import PaymentsDB, make_pool
from proxy.v2.libpq_read import read_order_status
from tests.conftest import Database
from tests.proxy.v2.test_db import tenant_with_order


async def test_a_read_cancelled_while_the_server_works_closes_its_connection(database: Database) -> None:
    order_id = "LQ-" + secrets.token_hex(4)
    tenant = tenant_with_order(database, order_id)
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open()
    try:
        db = PaymentsDB(pool)
        assert await db.order_status(tenant, order_id, 900.0) is not None
        with psycopg.connect(database.admin_url) as locker:  # the read now waits on the table's lock
            locker.execute("LOCK TABLE payments.orders IN ACCESS EXCLUSIVE MODE")
            async with pool.connection() as conn:
                read = asyncio.ensure_future(read_order_status(conn, tenant, order_id, 900.0))
                await asyncio.sleep(0.3)
                assert not read.done()
                read.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await read
                assert conn.closed  # its answer was still to come: never lent again
            locker.rollback()
        row = await db.order_status(tenant, order_id, 900.0)  # the pool's replacement answers
        assert row is not None and row["order_id"] == order_id
    finally:
        await pool.close()


async def test_an_error_from_the_server_leaves_the_connection_idle_and_usable(database: Database) -> None:
    order_id = "LQ-" + secrets.token_hex(4)
    tenant = tenant_with_order(database, order_id)
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open()
    try:
        async with pool.connection() as conn:
            with pytest.raises(psycopg.DataError) as info:  # an interval past PostgreSQL's range
                await read_order_status(conn, tenant, order_id, 1e300)
            assert info.value.sqlstate is not None and info.value.sqlstate.startswith("22")
            assert not conn.closed
            assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
            row = await read_order_status(conn, tenant, order_id, 900.0)
            assert row is not None and row["payment_status"] == "paid"
    finally:
        await pool.close()


async def test_a_prepared_statement_dropped_from_the_session_is_prepared_again(database: Database) -> None:
    order_id = "LQ-" + secrets.token_hex(4)
    tenant = tenant_with_order(database, order_id)
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open()
    try:
        async with pool.connection() as conn:
            assert await read_order_status(conn, tenant, order_id, 900.0) is not None
            await conn.execute("DEALLOCATE ALL")
            assert (await read_order_status(conn, tenant, order_id, 900.0) or {}).get("order_id") == order_id
    finally:
        await pool.close()


async def test_a_lost_backend_is_an_operational_error_and_the_next_read_gets_a_new_one(database: Database) -> None:
    order_id = "LQ-" + secrets.token_hex(4)
    tenant = tenant_with_order(database, order_id)
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open()
    try:
        db = PaymentsDB(pool)
        async with pool.connection() as conn:
            pid = conn.info.backend_pid
        with psycopg.connect(database.admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError):  # v2 answers it 503 (db.DATABASE_DOWN)
            await db.order_status(tenant, order_id, 900.0)
        assert (await db.order_status(tenant, order_id, 900.0) or {}).get("order_id") == order_id
    finally:
        await pool.close()


async def test_an_order_id_with_a_nul_never_reads_the_order_it_starts_with(database: Database) -> None:
    order_id = "LQ-" + secrets.token_hex(4)
    tenant = tenant_with_order(database, order_id)
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open()
    try:
        async with pool.connection() as conn:
            assert await read_order_status(conn, tenant, order_id + "\x00", 900.0) is None
            assert await read_order_status(conn, tenant, order_id + "\x00-other", 900.0) is None
            assert await read_order_status(conn, tenant, order_id, 900.0) is not None
    finally:
        await pool.close()


async def test_a_connection_inside_a_transaction_is_refused(database: Database) -> None:
    order_id = "LQ-" + secrets.token_hex(4)
    tenant = tenant_with_order(database, order_id)
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open()
    try:
        async with pool.connection() as conn, conn.transaction():  # bound to a tenant, it would stay so
            with pytest.raises(psycopg.ProgrammingError, match="idle connection"):
                await read_order_status(conn, tenant, order_id, 900.0)
    finally:
        await pool.close()


async def test_a_server_error_is_psycopgs_exception_for_it_even_for_a_code_psycopg_does_not_know(
        database: Database) -> None:
    schema = "lq_" + secrets.token_hex(4)  # a stand-in order_status() failing as a newer server's might
    with psycopg.connect(database.app_url) as app:
        app_role = app.info.user
    with psycopg.connect(database.admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {app_role}")
        admin.execute(
            f"CREATE FUNCTION {schema}.order_status(uuid, text, double precision) RETURNS TABLE (order_id text, "
            "payment_status text, gross_amount bigint, customer_name text, email text, has_snap boolean, "
            "recent boolean) LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'link to the orders store down' USING ERRCODE = '08P99'; END $$")
    pool = make_pool(database.app_url, schema, max_size=1)
    await pool.open()
    try:
        async with pool.connection() as conn:
            with pytest.raises(psycopg.OperationalError) as info:  # 08: connection exception, so v2 answers 503
                await read_order_status(conn, uuid.uuid4(), "LQ-1", 900.0)
            assert info.value.sqlstate == "08P99"
            assert info.value.diag.message_primary == "link to the orders store down"
            assert not conn.closed
    finally:
        await pool.close()
        with psycopg.connect(database.admin_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")

"""The status read sent through libpq directly: what psycopg would otherwise guarantee is kept (a
call interrupted midway never leaves its connection to the pool, an error from the server leaves it
usable and is psycopg's exception for its SQLSTATE, a vanished prepared statement is prepared again,
a NUL never cuts an order id short, a schema that disagrees is named)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import psycopg
import pytest

from proxy.v2.db import PaymentsDB, Pool, make_pool
from proxy.v2.status_read import read_order_status
from tests.conftest import Database
from tests.fixtures.v2_rows import tenant_with_order


@dataclass(frozen=True)
class Scene:
    pool: Pool  # of one connection: every read reuses it
    tenant: uuid.UUID
    order_id: str  # the tenant's one order, paid


@pytest.fixture
async def scene(database: Database) -> AsyncIterator[Scene]:
    order_id = "SR-" + secrets.token_hex(4)
    tenant = tenant_with_order(database, order_id)
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open()
    try:
        yield Scene(pool, tenant, order_id)
    finally:
        await pool.close()


async def test_a_read_cancelled_while_the_server_works_closes_its_connection(
        scene: Scene, database: Database) -> None:
    with psycopg.connect(database.admin_url) as locker:  # the read now waits on the table's lock
        locker.execute(f"LOCK TABLE {database.layout.schema}.orders IN ACCESS EXCLUSIVE MODE")
        async with scene.pool.connection() as conn:
            read = asyncio.ensure_future(read_order_status(conn, scene.tenant, scene.order_id, 900.0))
            await asyncio.sleep(0.3)
            assert not read.done()
            read.cancel()
            with pytest.raises(asyncio.CancelledError):
                await read
            assert conn.closed  # its answer was still to come: never lent again
        locker.rollback()
    row = await PaymentsDB(scene.pool).order_status(scene.tenant, scene.order_id, 900.0)  # the replacement
    assert row is not None and row["order_id"] == scene.order_id


async def test_an_error_from_the_server_leaves_the_connection_idle_and_usable(scene: Scene) -> None:
    async with scene.pool.connection() as conn:
        with pytest.raises(psycopg.DataError) as info:  # an interval past PostgreSQL's range
            await read_order_status(conn, scene.tenant, scene.order_id, 1e300)
        assert info.value.sqlstate is not None and info.value.sqlstate.startswith("22")
        assert not conn.closed
        assert conn.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        row = await read_order_status(conn, scene.tenant, scene.order_id, 900.0)
        assert row is not None and isinstance(row.pop("customer_name"), str)
        assert row == {"order_id": scene.order_id, "payment_status": "paid", "gross_amount": 1000, "email": "a@b.c",
                       "has_snap": False, "recent": True}


async def test_a_prepared_statement_dropped_from_the_session_is_prepared_again(scene: Scene) -> None:
    async with scene.pool.connection() as conn:
        assert await read_order_status(conn, scene.tenant, scene.order_id, 900.0) is not None
        await conn.execute("DEALLOCATE ALL")
        assert (await read_order_status(conn, scene.tenant, scene.order_id, 900.0) or {}).get("order_id") \
            == scene.order_id


async def test_a_lost_backend_is_an_operational_error_and_the_next_read_gets_a_new_one(
        scene: Scene, database: Database) -> None:
    db = PaymentsDB(scene.pool)
    async with scene.pool.connection() as conn:
        pid = conn.info.backend_pid
    with psycopg.connect(database.admin_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):  # v2 answers it 503 (db.DATABASE_DOWN)
        await db.order_status(scene.tenant, scene.order_id, 900.0)
    assert (await db.order_status(scene.tenant, scene.order_id, 900.0) or {}).get("order_id") == scene.order_id


async def test_an_order_id_with_a_nul_never_reads_the_order_it_starts_with(scene: Scene) -> None:
    async with scene.pool.connection() as conn:
        assert await read_order_status(conn, scene.tenant, scene.order_id + "\x00", 900.0) is None
        assert await read_order_status(conn, scene.tenant, scene.order_id + "\x00-other", 900.0) is None
        assert await read_order_status(conn, scene.tenant, scene.order_id, 900.0) is not None


async def test_a_connection_in_a_transaction_out_of_autocommit_or_in_pipeline_mode_is_refused(scene: Scene) -> None:
    async with scene.pool.connection() as conn:
        async with conn.transaction():  # bound to a tenant, it would stay so
            with pytest.raises(psycopg.ProgrammingError, match="this one is INTRANS"):
                await read_order_status(conn, scene.tenant, scene.order_id, 900.0)
        async with conn.pipeline():  # no Sync would end the statement's transaction
            with pytest.raises(psycopg.ProgrammingError, match="pipeline ON"):
                await read_order_status(conn, scene.tenant, scene.order_id, 900.0)
        await conn.set_autocommit(False)
        try:
            with pytest.raises(psycopg.ProgrammingError, match="autocommit False"):
                await read_order_status(conn, scene.tenant, scene.order_id, 900.0)
        finally:
            await conn.set_autocommit(True)
        assert await read_order_status(conn, scene.tenant, scene.order_id, 900.0) is not None


@pytest.fixture
def stand_in_schema(database: Database) -> Iterator[str]:
    """A schema of its own, where a test defines the order_status() a pool reading it calls."""
    schema = "sr_" + secrets.token_hex(4)
    with psycopg.connect(database.app_url) as app:
        app_role = app.info.user
    with psycopg.connect(database.admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {app_role}")
    try:
        yield schema
    finally:
        with psycopg.connect(database.admin_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


async def _read_through(database: Database, schema: str, function_body: str, amount_type: str = "bigint") -> None:
    with psycopg.connect(database.admin_url, autocommit=True) as admin:
        admin.execute(
            f"CREATE FUNCTION {schema}.order_status(uuid, text, double precision) RETURNS TABLE (order_id text, "
            f"payment_status text, gross_amount {amount_type}, customer_name text, email text, has_snap boolean, "
            f"recent boolean) LANGUAGE plpgsql AS $$ BEGIN {function_body} END $$")
    pool = make_pool(database.app_url, schema, max_size=1)
    await pool.open()
    try:
        async with pool.connection() as conn:
            try:
                await read_order_status(conn, uuid.uuid4(), "SR-1", 900.0)
            finally:
                assert not conn.closed  # an answer, even an error, leaves the connection usable
    finally:
        await pool.close()


async def test_a_server_error_is_psycopgs_exception_for_it_even_for_a_code_psycopg_does_not_know(
        database: Database, stand_in_schema: str) -> None:
    with pytest.raises(psycopg.OperationalError) as info:  # 08: connection exception, so v2 answers 503
        await _read_through(database, stand_in_schema,
                            "RAISE EXCEPTION 'link to the orders store down' USING ERRCODE = '08P99';")
    assert info.value.sqlstate == "08P99"
    assert info.value.diag.message_primary == "link to the orders store down"


async def test_a_schema_whose_columns_disagree_is_named_not_misread(database: Database, stand_in_schema: str) -> None:
    with pytest.raises(psycopg.ProgrammingError, match=r"\('gross_amount', 1700\).*the payments schema and v2 disagree"):
        await _read_through(database, stand_in_schema,
                            "RETURN QUERY SELECT 'SR-1', 'paid', 1000.00::numeric, 'n', 'e', true, false;",
                            amount_type="numeric")

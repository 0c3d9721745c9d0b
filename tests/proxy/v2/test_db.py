"""v2's tenant read (the row, then its secrets bound to it), its order status read and the two
transactions of a payment creation: one round trip each, nothing leaks after."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from controlplane.db.tenants import NewTenant, TenantAdmin
from proxy.v2.db import PaymentsDB, make_pool
from tests.conftest import Database, wait_until
from tests.fixtures.v2_rows import tenant_with_order


async def test_a_tenant_is_read_with_its_secrets_and_the_connection_keeps_nothing(database: Database,
                                                                                  tmp_path: Path) -> None:
    admin = TenantAdmin(database.admin_url, database.layout)
    slug, key = "db" + secrets.token_hex(3), "SB-Mid-server-" + secrets.token_hex(10)
    token = admin.add(NewTenant(slug, slug, "pro", key, "sandbox"))
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)  # one connection: reuse is certain
    await pool.open()
    try:
        db = PaymentsDB(pool, tenant_ttl_s=0.0)
        trace = tmp_path / "protocol.trace"
        with trace.open("w") as out:
            async with pool.connection() as conn:
                conn.pgconn.trace(out.fileno())
            tenant = await db.tenant_by_slug(slug)
            async with pool.connection() as conn:
                conn.pgconn.untrace()
        # One round trip: the client waits for the server once (one Sync) per uncached tenant read.
        assert trace.read_text().count("\tSync") == 1
        assert tenant is not None and tenant.server_key.reveal() == key
        assert tenant.admin_token_sha256 is not None and len(tenant.admin_token_sha256) == 64
        assert key not in repr(tenant) and token not in repr(tenant)
        assert await db.tenant_by_slug("nobody" + secrets.token_hex(2)) is None
        async with pool.connection() as conn:  # the same connection, the next request
            cursor = await conn.execute("SELECT current_setting('app.tenant_id', true) AS s")
            assert (await cursor.fetchone()) in ({"s": ""}, {"s": None})
            cursor = await conn.execute("SELECT count(*) AS n FROM tenant_secrets")
            assert await cursor.fetchone() == {"n": 0}
    finally:
        await pool.close()


async def test_a_tenant_without_a_readable_key_is_unknown(database: Database,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    admin = TenantAdmin(database.admin_url, database.layout)
    slug = "nokey" + secrets.token_hex(3)
    admin.add(NewTenant(slug, slug, "pro", "SB-Mid-server-" + secrets.token_hex(10), "sandbox"))
    with psycopg.connect(database.admin_url) as conn:  # a hand-edited database
        conn.execute("DELETE FROM payments.tenant_secrets s USING payments.tenants t "
                     "WHERE t.id = s.tenant_id AND t.slug = %s", (slug,))
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open()
    try:
        assert await PaymentsDB(pool, tenant_ttl_s=0.0).tenant_by_slug(slug) is None  # never an empty key
    finally:
        await pool.close()
    assert f"tenant {slug}: no Midtrans server key readable" in caplog.text


async def test_a_status_read_is_one_round_trip_once_prepared_bound_to_its_tenant_and_leaves_nothing(
        database: Database, tmp_path: Path) -> None:
    order_id = "ST-" + secrets.token_hex(4)
    a, b = tenant_with_order(database, order_id), tenant_with_order(database, order_id + "-B")
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)  # one connection: reuse is certain
    await pool.open()
    try:
        db = PaymentsDB(pool)
        traces = [tmp_path / "first.trace", tmp_path / "next.trace"]
        for trace in traces:  # the session's first read prepares the statement; every later one runs it
            with trace.open("w") as out:
                async with pool.connection() as conn:
                    conn.pgconn.trace(out.fileno())
                row = await db.order_status(a, order_id, 900.0)
                async with pool.connection() as conn:
                    conn.pgconn.untrace()
        assert [t.read_text().count("\tSync") for t in traces] == [2, 1]  # then one round trip a read
        assert traces[1].read_text().count("\tParse") == 0
        assert row is not None and row["order_id"] == order_id and row["payment_status"] == "paid"
        assert row["has_snap"] is False and row["recent"] is True
        # The same connection, tenant B next: A's order is invisible, B's own is there.
        assert await db.order_status(b, order_id, 900.0) is None
        assert (await db.order_status(b, order_id + "-B", 900.0) or {}).get("order_id") == order_id + "-B"
        for _ in range(6):  # the prepared call binds its tenant each time
            assert await db.order_status(a, order_id + "-B", 900.0) is None
            assert await db.order_status(a, order_id, 900.0) is not None
        async with pool.connection() as conn:  # and then a request with no tenant at all sees nothing
            cursor = await conn.execute("SELECT current_setting('app.tenant_id', true) AS s")
            assert (await cursor.fetchone()) in ({"s": ""}, {"s": None})
            cursor = await conn.execute("SELECT count(*) AS n FROM orders")
            assert await cursor.fetchone() == {"n": 0}
            cursor = await conn.execute("SELECT count(*) AS n FROM order_status(NULL, %s, 900)", (order_id,))
            assert await cursor.fetchone() == {"n": 0}
    finally:
        await pool.close()


def _round_trips(trace: str) -> list[str]:
    """The messages the client waits after: each Sync (extended protocol) and each simple Query
    (psycopg's BEGIN and COMMIT)."""
    return re.findall(r"\tF\t\d+\t(Sync|Query)\b", trace)


def _tenant(database: Database, limit: int | None = None) -> uuid.UUID:
    slug = "cr" + secrets.token_hex(3)
    TenantAdmin(database.admin_url, database.layout).add(
        NewTenant(slug, slug, "enterprise", "SB-Mid-server-" + secrets.token_hex(10), "sandbox",
                  max_orders_per_month=limit))
    with psycopg.connect(database.admin_url) as conn:
        tenant_id: uuid.UUID = conn.execute("SELECT id FROM payments.tenants WHERE slug = %s", (slug,)).fetchone()[0]
    return tenant_id


async def _create(db: PaymentsDB, tenant: uuid.UUID, order_id: str, *, amount: int = 1000,
                  email: str = "Buyer@Example.com", name: str = "Budi") -> dict[str, Any]:
    return await db.create_order(tenant, order_id, amount=amount, email=email, phone="0812", name=name,
                                 payment_method="bca", monthly_limit=5)


def _rows(database: Database, tenant: uuid.UUID) -> dict[str, list[tuple[Any, ...]]]:
    """What the tenant holds, read past row-level security."""
    with psycopg.connect(database.admin_url) as conn:
        def rows(query: str) -> list[tuple[Any, ...]]:
            return conn.execute(query, (tenant,)).fetchall()
        return {
            "orders": rows("SELECT order_id, gross_amount, email, payment_status, snap_token, redirect_url "
                           "FROM payments.orders WHERE tenant_id = %s ORDER BY created_at, order_id"),
            "customers": rows("SELECT email, name FROM payments.customers WHERE tenant_id = %s ORDER BY email"),
            "outbox": rows("SELECT order_id, template, status FROM payments.notification_outbox "
                           "WHERE tenant_id = %s ORDER BY id"),
            "usage": rows("SELECT orders FROM payments.usage_counters WHERE tenant_id = %s"),
        }


async def test_a_create_is_one_round_trip_each_side_of_snap_bound_to_its_tenant_and_leaves_nothing(
        database: Database, tmp_path: Path) -> None:
    order_id = "CR-" + secrets.token_hex(4)
    a, b = _tenant(database), _tenant(database)
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)  # one connection: reuse is certain
    await pool.open()
    try:
        db = PaymentsDB(pool)
        assert (await _create(db, b, order_id, amount=2000, name="Bea"))["outcome"] == "created"
        trace = tmp_path / "protocol.trace"
        with trace.open("w") as out:
            async with pool.connection() as conn:
                conn.pgconn.trace(out.fileno())
            created = await _create(db, a, order_id)  # b's order of that id is invisible to a
            stored = await db.store_payment_link(a, order_id, snap_token="tok-a", redirect_url="https://pay/a",
                                                 email_template="order_created")
            async with pool.connection() as conn:
                conn.pgconn.untrace()
        assert _round_trips(trace.read_text()) == ["Sync", "Sync"]  # no BEGIN, no COMMIT: one each
        assert created["outcome"] == "created" and stored == ("tok-a", "https://pay/a", True)
        # A repeat finds a's order, and only a's; a second link (a concurrent repeat's) is answered
        # with the first, and queues no second email.
        again = await _create(db, a, order_id, amount=3000)
        assert (again["outcome"], again["stored_amount"], again["stored_email"], again["stored_status"],
                again["stored_snap_token"], again["stored_redirect_url"]) == (
                    "exists", 1000, "Buyer@Example.com", "pending", "tok-a", "https://pay/a")
        assert await db.store_payment_link(a, order_id, snap_token="tok-late", redirect_url="https://pay/late",
                                           email_template="order_created") == ("tok-a", "https://pay/a", False)
        for i in range(6):  # past psycopg's prepare threshold: prepared calls bind their tenant as well
            tenant = (a, b)[i % 2]
            assert (await _create(db, tenant, f"{order_id}-{i}"))["outcome"] == "created"
        async with pool.connection() as conn:  # the same connection, a request with no tenant: nothing
            cursor = await conn.execute("SELECT current_setting('app.tenant_id', true) AS s")
            assert (await cursor.fetchone()) in ({"s": ""}, {"s": None})
            for table in ("orders", "customers", "notification_outbox", "usage_counters"):
                cursor = await conn.execute(f"SELECT count(*) AS n FROM {table}")
                assert await cursor.fetchone() == {"n": 0}, table
    finally:
        await pool.close()
    mine, theirs = _rows(database, a), _rows(database, b)
    assert mine["orders"][0] == (order_id, 1000, "Buyer@Example.com", "pending", "tok-a", "https://pay/a")
    assert [row[0] for row in mine["orders"]] == [order_id] + [f"{order_id}-{i}" for i in (0, 2, 4)]
    assert mine["customers"] == [("buyer@example.com", "Budi")]  # keyed by the folded address
    assert mine["outbox"] == [(order_id, "order_created", "pending")] and mine["usage"] == [(4,)]
    assert theirs["orders"][0] == (order_id, 2000, "Buyer@Example.com", "pending", None, None)
    assert theirs["customers"] == [("buyer@example.com", "Budi")]  # the last create's name for b
    assert theirs["outbox"] == [] and theirs["usage"] == [(4,)]


async def test_the_monthly_limit_refuses_a_new_order_and_writes_nothing(database: Database) -> None:
    full, none_allowed = _tenant(database), _tenant(database)
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open()
    try:
        db = PaymentsDB(pool)

        async def create(tenant: uuid.UUID, order_id: str, limit: int) -> str:
            row = await db.create_order(tenant, order_id, amount=1000, email="a@b.c", phone="1", name="A",
                                        payment_method=None, monthly_limit=limit)
            return str(row["outcome"])

        assert [await create(full, f"L-{i}", 2) for i in range(3)] == ["created", "created", "monthly_limit_reached"]
        assert await create(full, "L-0", 2) == "exists"  # a repeat is answered whatever the quota
        assert await create(none_allowed, "Z-1", 0) == "monthly_limit_reached"
    finally:
        await pool.close()
    assert _rows(database, full)["usage"] == [(2,)] and len(_rows(database, full)["orders"]) == 2
    assert _rows(database, none_allowed) == {"orders": [], "customers": [], "outbox": [], "usage": []}


async def test_a_concurrent_insert_of_the_same_order_undoes_the_whole_call_quota_included(database: Database) -> None:
    tenant = _tenant(database)
    order_id = "RACE-" + secrets.token_hex(4)
    pool = make_pool(database.app_url, database.layout.schema, max_size=1)
    await pool.open()
    try:
        db = PaymentsDB(pool)
        assert (await _create(db, tenant, order_id + "-0"))["outcome"] == "created"  # the counter row exists
        async with await psycopg.AsyncConnection.connect(database.app_url, autocommit=True) as first:
            async with first.transaction():  # another worker's create, not committed yet
                await first.execute("SELECT * FROM payments.create_order(%s, %s, 1000, 'x@y.z', 'x@y.z', '1', "
                                    "'X', NULL, 5)", (tenant, order_id))
                second = asyncio.ensure_future(_create(db, tenant, order_id))
                await wait_until(lambda: _waiting_on_a_lock(database), timeout_s=15.0)
            with pytest.raises(psycopg.errors.UniqueViolation):
                await second
        assert (await _create(db, tenant, order_id))["outcome"] == "exists"  # what the caller's retry finds
    finally:
        await pool.close()
    rows = _rows(database, tenant)
    assert rows["usage"] == [(2,)]  # the first create's unit and the winner's; the loser's was undone
    assert [r[0] for r in rows["orders"]] == [order_id + "-0", order_id]
    assert rows["customers"] == [("buyer@example.com", "Budi"), ("x@y.z", "X")]


def _waiting_on_a_lock(database: Database) -> bool:
    with psycopg.connect(database.admin_url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND wait_event_type = 'Lock'",
                           (database.layout.app_role,)).fetchone()
    return row is not None and row[0] > 0

"""Tenant isolation enforced by the database itself: raw SQL as the application role."""

from __future__ import annotations

import secrets

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from controlplane.db.tenants import NewTenant, TenantAdmin
from tests.conftest import Database


@pytest.fixture(scope="module")
def two_tenants(database: Database) -> tuple[str, str]:
    admin = TenantAdmin(database.admin_url, database.layout)
    ids = []
    for _ in range(2):
        name = "iso" + secrets.token_hex(3)
        admin.add(NewTenant(name, name, "pro", "SB-Mid-server-ISOLATION0001", "sandbox"))
        with psycopg.connect(database.admin_url) as conn:
            ids.append(str(conn.execute("SELECT id FROM payments.tenants WHERE slug = %s", (name,)).fetchone()[0]))
    with psycopg.connect(database.app_url) as conn:
        for tenant_id in ids:
            with conn.transaction():
                conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant_id,))
                customer = conn.execute(
                    "INSERT INTO payments.customers (tenant_id, email, phone, name) "
                    "VALUES (%s, 'a@b.c', '1', 'A') RETURNING id", (tenant_id,)).fetchone()[0]
                conn.execute(
                    "INSERT INTO payments.orders (tenant_id, order_id, customer_id, customer_name, email, phone, "
                    "gross_amount) VALUES (%s, 'SAME-ID', %s, 'A', 'a@b.c', '1', 1000)", (tenant_id, customer))
    return ids[0], ids[1]


def as_tenant(conn: psycopg.Connection, tenant_id: str) -> None:
    conn.execute("SELECT set_config('app.tenant_id', %s, true)", (tenant_id,))


def test_the_app_role_sees_only_its_tenants_rows(database: Database, two_tenants: tuple[str, str]) -> None:
    a, b = two_tenants
    with psycopg.connect(database.app_url) as conn:
        with conn.transaction():
            as_tenant(conn, a)
            rows = conn.execute("SELECT tenant_id::text FROM payments.orders").fetchall()
            assert rows == [(a,)]  # the same order id exists for b, invisible here
            # Even naming the other tenant explicitly finds nothing.
            assert conn.execute("SELECT count(*) FROM payments.orders WHERE tenant_id = %s", (b,)).fetchone() == (0,)
            # Updates cannot reach the other tenant's rows...
            result = conn.execute("UPDATE payments.orders SET payment_status = 'paid' WHERE tenant_id = %s", (b,))
            assert result.rowcount == 0
        # ...and writes cannot create rows for it.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            with conn.transaction():
                as_tenant(conn, a)
                conn.execute("INSERT INTO payments.customers (tenant_id, email, phone, name) "
                             "VALUES (%s, 'x@y.z', '1', 'X')", (b,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            with conn.transaction():
                as_tenant(conn, a)
                conn.execute("DELETE FROM payments.orders")


def test_no_tenant_context_means_no_rows(database: Database, two_tenants: tuple[str, str]) -> None:
    with psycopg.connect(database.app_url) as conn:
        assert conn.execute("SELECT count(*) FROM payments.orders").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM payments.customers").fetchone() == (0,)


def test_a_pooled_connection_never_leaks_the_previous_tenant(
    database: Database, two_tenants: tuple[str, str]
) -> None:
    a, _ = two_tenants
    with ConnectionPool(database.app_url, min_size=1, max_size=1, open=True) as pool:
        with pool.connection() as conn, conn.transaction():
            as_tenant(conn, a)
            assert conn.execute("SELECT count(*) FROM payments.orders").fetchone() == (1,)
        with pool.connection() as conn:
            with conn.transaction():
                setting = conn.execute("SELECT current_setting('app.tenant_id', true)").fetchone()
                assert setting in ((""), ("",), (None,))
                assert conn.execute("SELECT count(*) FROM payments.orders").fetchone() == (0,)


def test_cross_tenant_references_are_impossible(database: Database, two_tenants: tuple[str, str]) -> None:
    a, b = two_tenants
    with psycopg.connect(database.admin_url) as conn:
        b_customer = conn.execute("SELECT id FROM payments.customers WHERE tenant_id = %s", (b,)).fetchone()[0]
    with psycopg.connect(database.app_url) as conn, pytest.raises(psycopg.errors.ForeignKeyViolation):
        with conn.transaction():
            as_tenant(conn, a)
            conn.execute("INSERT INTO payments.orders (tenant_id, order_id, customer_id, customer_name, email, "
                         "phone, gross_amount) VALUES (%s, 'X-1', %s, 'A', 'a@b.c', '1', 1)", (a, b_customer))

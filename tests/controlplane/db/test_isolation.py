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


def test_the_status_read_function_binds_its_tenant_for_its_own_statement_only(
    database: Database, two_tenants: tuple[str, str]
) -> None:
    a, b = two_tenants
    read = "SELECT customer_name FROM payments.order_status(%s, 'SAME-ID', 60)"
    with ConnectionPool(database.app_url, min_size=1, max_size=1, open=True,
                        kwargs={"autocommit": True}) as pool:
        with pool.connection() as conn:
            assert conn.execute(read, (a,)).fetchall() == [("A",)]
        with pool.connection() as conn:  # the same connection, the next request
            assert conn.execute("SELECT current_setting('app.tenant_id', true)").fetchone() in (("",), (None,))
            assert conn.execute("SELECT count(*) FROM payments.orders").fetchone() == (0,)
            assert conn.execute(read, (None,)).fetchall() == []  # no tenant: nothing
            assert conn.execute(read, (b,)).fetchall() == [("A",)]  # b's own SAME-ID, one row, not a's too
            with psycopg.connect(database.admin_url) as admin:
                admin.execute("UPDATE payments.orders SET customer_name = 'B' WHERE tenant_id = %s", (b,))
            assert conn.execute(read, (b,)).fetchall() == [("B",)]
            assert conn.execute(read, (a,)).fetchall() == [("A",)]


def test_the_create_functions_bind_their_tenant_for_their_own_statement_only(database: Database) -> None:
    admin = TenantAdmin(database.admin_url, database.layout)
    ids = []
    for _ in range(2):
        name = "isc" + secrets.token_hex(3)
        admin.add(NewTenant(name, name, "pro", "SB-Mid-server-ISOLATION0002", "sandbox"))
        with psycopg.connect(database.admin_url) as conn:
            ids.append(str(conn.execute("SELECT id FROM payments.tenants WHERE slug = %s", (name,)).fetchone()[0]))
    a, b = ids
    create = ("SELECT outcome, stored_amount FROM payments.create_order(%s, 'SAME-ID', %s, 'a@b.c', 'a@b.c', '1', "
              "%s, NULL, NULL)")
    store = "SELECT * FROM payments.store_payment_link(%s, 'SAME-ID', %s, 'https://pay/x', 'order_created')"
    with ConnectionPool(database.app_url, min_size=1, max_size=1, open=True,
                        kwargs={"autocommit": True}) as pool:
        with pool.connection() as conn:
            assert conn.execute(create, (b, 2000, "B")).fetchall() == [("created", None)]
        with pool.connection() as conn:  # the same connection, the next request: a's, the same order id
            assert conn.execute("SELECT current_setting('app.tenant_id', true)").fetchone() in (("",), (None,))
            assert conn.execute(create, (a, 1000, "A")).fetchall() == [("created", None)]  # b's is invisible
            assert conn.execute(create, (a, 1000, "A")).fetchall() == [("exists", 1000)]  # a's own, not b's 2000
            assert conn.execute(store, (a, "tok-a")).fetchall() == [("tok-a", "https://pay/x", True)]
        with pool.connection() as conn:  # no tenant: nothing to read, nothing to write
            for table in ("orders", "customers", "notification_outbox", "usage_counters"):
                assert conn.execute(f"SELECT count(*) FROM payments.{table}").fetchone() == (0,), table
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
                conn.execute(create, (None, 1000, "N"))
            assert conn.execute(store, (None, "tok-none")).fetchall() == [("tok-none", "https://pay/x", False)]
            # The functions are the owner's: the application role cannot redefine them to reach further.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE OR REPLACE FUNCTION payments.store_payment_link(tenant uuid, wanted_order_id "
                             "text, new_snap_token text, new_redirect_url text, email_template text) RETURNS TABLE "
                             "(snap_token_answered text, redirect_url_answered text, email_queued boolean) "
                             "LANGUAGE sql AS $$ SELECT NULL::text, NULL::text, false $$")
    with psycopg.connect(database.admin_url) as conn:
        def held(tenant: str) -> list[tuple[object, ...]]:
            return conn.execute(
                "SELECT o.gross_amount, o.customer_name, o.snap_token, c.name, "
                "(SELECT count(*) FROM payments.notification_outbox x WHERE x.tenant_id = o.tenant_id) "
                "FROM payments.orders o JOIN payments.customers c ON c.tenant_id = o.tenant_id AND c.id = o.customer_id "
                "WHERE o.tenant_id = %s", (tenant,)).fetchall()
        assert held(a) == [(1000, "A", "tok-a", "A", 1)]
        assert held(b) == [(2000, "B", None, "B", 0)]  # a's upsert of the same email left b's customer alone
        assert conn.execute("SELECT bool_or(prosecdef) FROM pg_proc WHERE proname IN "
                            "('create_order', 'store_payment_link', 'order_status')").fetchone() == (False,)


def test_the_functions_refuse_a_transaction_bound_to_another_tenant_and_name_their_own_tenant(
    database: Database, two_tenants: tuple[str, str]
) -> None:
    a, b = two_tenants
    read = "SELECT customer_name FROM payments.order_status(%s, 'SAME-ID', 60)"
    with psycopg.connect(database.app_url) as conn:
        # Inside a transaction bound to a, a call for b would leave the rest of it bound to b: refused.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="bound to another tenant"):
            with conn.transaction():
                as_tenant(conn, a)
                conn.execute(read, (b,))
        with conn.transaction():
            as_tenant(conn, a)
            assert conn.execute(read, (a,)).fetchall() == [("A",)]  # its own tenant: fine
    # A role that bypasses row-level security (ops repairing an order as a superuser) still reads and
    # writes the tenant it names only, never the other tenant's order with the same id.
    with psycopg.connect(database.admin_url, autocommit=True) as admin:
        assert admin.execute(read, (a,)).fetchall() == [("A",)]
        link = "SELECT snap_token_answered FROM payments.store_payment_link(%s, 'SAME-ID', %s, 'https://x', 'order_created')"
        admin.execute(link, (a, "tok-a"))
        tokens = dict(admin.execute("SELECT tenant_id::text, snap_token FROM payments.orders WHERE order_id = 'SAME-ID' "
                                    "AND tenant_id IN (%s, %s)", (a, b)).fetchall())
        assert tokens == {a: "tok-a", b: None}
        admin.execute("UPDATE payments.orders SET snap_token = NULL, redirect_url = NULL WHERE order_id = 'SAME-ID' "
                      "AND tenant_id = %s", (a,))
        admin.execute("DELETE FROM payments.notification_outbox WHERE order_id = 'SAME-ID' AND tenant_id = %s", (a,))

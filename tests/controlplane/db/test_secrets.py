"""Tenant secrets under least privilege, proved by connecting as the roles the servers use.

The application role (v2) reads a tenant's Midtrans key and admin-token hash only inside a
transaction bound to that tenant, never as a listing; the router's role calls one function for one
tenant's key by slug and reads no table at all.
"""

from __future__ import annotations

import dataclasses
import secrets

import psycopg
import pytest

from controlplane.db.migrate import bundled_migrations, migrate
from controlplane.db.tenants import NewTenant, TenantAdmin, hash_token
from tests.conftest import Database


@pytest.fixture(scope="module")
def two_tenants(database: Database) -> list[tuple[str, str, str]]:
    """(slug, id, server key) of two tenants."""
    admin = TenantAdmin(database.admin_url, database.layout)
    out = []
    for _ in range(2):
        slug = "sec" + secrets.token_hex(3)
        key = "SB-Mid-server-" + secrets.token_hex(10)
        admin.add(NewTenant(slug, slug, "pro", key, "sandbox"))
        with psycopg.connect(database.admin_url) as conn:
            row = conn.execute("SELECT id::text FROM payments.tenants WHERE slug = %s", (slug,)).fetchone()
        assert row is not None
        out.append((slug, row[0], key))
    return out


def test_the_tenants_table_holds_no_secret(database: Database) -> None:
    with psycopg.connect(database.admin_url) as conn:
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'payments' "
            "AND table_name = 'tenants'")}
    assert "slug" in columns
    assert not columns & {"midtrans_server_key", "admin_token_sha256"}


def test_the_app_role_reads_one_tenants_secrets_only_bound_to_it(
    database: Database, two_tenants: list[tuple[str, str, str]]
) -> None:
    (_, a_id, a_key), (_, b_id, _) = two_tenants
    with psycopg.connect(database.app_url, autocommit=True) as conn:
        # No tenant bound: no secret at all, not even by naming a tenant.
        assert conn.execute("SELECT count(*) FROM payments.tenant_secrets").fetchone() == (0,)
        assert conn.execute("SELECT midtrans_server_key FROM payments.tenant_secrets WHERE tenant_id = %s",
                            (a_id,)).fetchall() == []
        with conn.transaction():
            conn.execute("SELECT set_config('app.tenant_id', %s, true)", (a_id,))
            rows = conn.execute("SELECT tenant_id::text, midtrans_server_key FROM payments.tenant_secrets").fetchall()
            assert rows == [(a_id, a_key)]  # a listing shows the bound tenant's row and nothing else
            assert conn.execute("SELECT count(*) FROM payments.tenant_secrets WHERE tenant_id = %s",
                                (b_id,)).fetchone() == (0,)
            # It cannot change a secret, even its own.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                with conn.transaction():
                    conn.execute("UPDATE payments.tenant_secrets SET admin_token_sha256 = 'x'")
        # The router's function is not the application role's.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT payments.notification_key(%s)", (two_tenants[0][0],))


def test_the_router_role_gets_one_tenants_key_by_slug_and_nothing_else(
    database: Database, two_tenants: list[tuple[str, str, str]]
) -> None:
    (a_slug, _, a_key), (b_slug, b_id, b_key) = two_tenants
    with psycopg.connect(database.router_url, autocommit=True) as conn:
        assert conn.execute("SELECT payments.notification_key(%s)", (a_slug,)).fetchone() == (a_key,)
        assert conn.execute("SELECT payments.notification_key(%s)", (b_slug,)).fetchone() == (b_key,)
        assert conn.execute("SELECT payments.notification_key('nobody')").fetchone() == (None,)
        for table in ("tenants", "tenant_secrets", "orders", "payment_events", "customers"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT 1 FROM payments.{table} LIMIT 1")
        # Binding a tenant grants nothing either: the role has no table privilege to begin with.
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("SELECT set_config('app.tenant_id', %s, true)", (b_id,))
            conn.execute("SELECT midtrans_server_key FROM payments.tenant_secrets")
    with psycopg.connect(database.admin_url) as conn:
        role = conn.execute("SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb "
                            "FROM pg_roles WHERE rolname = %s", (database.layout.router_role,)).fetchone()
        grants = conn.execute("SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = %s "
                              "AND table_schema = 'payments'",  # the state schema's are tests/controlplane/state's
                              (database.layout.router_role,)).fetchone()
    assert role == (False, False, True, False, False)
    assert grants == (0,)


def test_a_cancelled_tenant_has_no_notification_key(database: Database) -> None:
    admin = TenantAdmin(database.admin_url, database.layout)
    slug = "gone" + secrets.token_hex(3)
    admin.add(NewTenant(slug, slug, "pro", "SB-Mid-server-" + secrets.token_hex(8), "sandbox"))
    admin.set(slug, status="suspended")  # a suspended tenant's payments still settle: its key is read
    with psycopg.connect(database.router_url, autocommit=True) as conn:
        assert conn.execute("SELECT payments.notification_key(%s)", (slug,)).fetchone() != (None,)
        admin.set(slug, status="cancelled")
        assert conn.execute("SELECT payments.notification_key(%s)", (slug,)).fetchone() == (None,)


def test_tenant_commands_write_the_secrets(database: Database) -> None:
    admin = TenantAdmin(database.admin_url, database.layout)
    slug = "w" + secrets.token_hex(3)
    first = admin.add(NewTenant(slug, slug, "pro", "SB-Mid-server-FIRSTKEY0001", "sandbox"))
    admin.set(slug, midtrans_server_key="SB-Mid-server-SECONDKEY002", name="Renamed")
    second = admin.rotate_admin_token(slug)
    with psycopg.connect(database.admin_url) as conn:
        row = conn.execute("SELECT t.name, s.midtrans_server_key, s.admin_token_sha256 FROM payments.tenants t "
                           "JOIN payments.tenant_secrets s ON s.tenant_id = t.id WHERE t.slug = %s",
                           (slug,)).fetchone()
    assert row == ("Renamed", "SB-Mid-server-SECONDKEY002", hash_token(second))
    assert hash_token(first) != hash_token(second)
    assert admin.readiness(slug) is None


def test_0005_moves_existing_secrets_out_of_the_tenants_table(database: Database) -> None:
    layout = dataclasses.replace(database.layout, schema="m0005_" + secrets.token_hex(3))
    migrate(database.admin_url, layout, migrations=[m for m in bundled_migrations() if m.version < "0005"])
    try:
        with psycopg.connect(database.admin_url) as conn:  # as tenant administration left them before
            conn.execute(layout.render(
                "INSERT INTO {schema}.tenants (slug, name, plan, midtrans_server_key, midtrans_environment, "
                "admin_token_sha256) VALUES ('m5', 'M5', 'pro', 'SB-Mid-server-M5KEY', 'sandbox', 'abc')"))
        assert "0005" in migrate(database.admin_url, layout).applied
        with psycopg.connect(database.admin_url) as conn:
            moved = conn.execute(layout.render(
                "SELECT t.slug, s.midtrans_server_key, s.admin_token_sha256 FROM {schema}.tenants t "
                "JOIN {schema}.tenant_secrets s ON s.tenant_id = t.id")).fetchall()
        assert moved == [("m5", "SB-Mid-server-M5KEY", "abc")]
        with psycopg.connect(database.router_url, autocommit=True) as conn:
            key = conn.execute(layout.render("SELECT {schema}.notification_key('m5')")).fetchone()
        assert key == ("SB-Mid-server-M5KEY",)
    finally:
        with psycopg.connect(database.admin_url, autocommit=True) as conn:
            conn.execute(layout.render("DROP SCHEMA {schema} CASCADE"))

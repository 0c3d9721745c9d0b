from __future__ import annotations

import psycopg
import pytest

from controlplane.db.migrate import Migration, MigrationError, bundled_migrations, migrate
from tests.conftest import Database


def test_migrations_are_recorded_and_rerunning_changes_nothing(database: Database) -> None:
    report = migrate(database.admin_url, database.layout)
    assert report.applied == [] and report.roles_created == []
    assert report.already_applied == [m.version for m in bundled_migrations()]
    with psycopg.connect(database.admin_url) as conn:
        rows = conn.execute("SELECT version, checksum FROM payments.schema_migrations ORDER BY version").fetchall()
    assert rows == [(m.version, m.checksum) for m in bundled_migrations()]


def test_an_edited_applied_migration_is_refused(database: Database) -> None:
    first = bundled_migrations()[0]
    edited = Migration(first.version, first.name, first.sql + "\n-- edited\n")
    with pytest.raises(MigrationError, match="was changed after it was applied"):
        migrate(database.admin_url, database.layout, migrations=[edited])


def test_the_application_role_can_bypass_nothing_and_owns_nothing(database: Database) -> None:
    with psycopg.connect(database.admin_url) as conn:
        role = conn.execute("SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb "
                            "FROM pg_roles WHERE rolname = %s", (database.layout.app_role,)).fetchone()
        owned = conn.execute("SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                             "WHERE r.rolname = %s", (database.layout.app_role,)).fetchone()
        forced = conn.execute("SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
                              "WHERE relnamespace = 'payments'::regnamespace AND relkind = 'r' "
                              "ORDER BY relname").fetchall()
        policies = conn.execute("SELECT tablename FROM pg_policies WHERE schemaname = 'payments' "
                                "ORDER BY tablename").fetchall()
    assert role == (False, False, True, False, False)
    assert owned == (0,)
    tenant_tables = {"customers", "orders", "payment_events", "notification_outbox", "usage_counters",
                     "tenant_secrets"}
    assert {name for name, rls, force in forced if rls and force} == tenant_tables
    assert {name for (name,) in policies} == tenant_tables


def test_a_failing_migration_names_its_file_and_leaves_nothing(database: Database) -> None:
    broken = Migration("9999", "broken", "CREATE TABLE {schema}.half (id int); SELECT no_such_function();")
    with pytest.raises(MigrationError, match=r"9999_broken\.sql failed"):
        migrate(database.admin_url, database.layout, migrations=[broken])
    with psycopg.connect(database.admin_url) as conn:
        assert conn.execute("SELECT to_regclass('payments.half')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM payments.schema_migrations WHERE version = '9999'"
                            ).fetchone() == (0,)


def test_migration_0004_keeps_what_the_log_only_sender_left_visible(database: Database) -> None:
    """Rows the log-only sender marked sent were never emailed: dead-lettered with that reason (ops
    decide); orders v2 did not create (no Snap token: migrated from v1) are v1's, their rows skipped."""
    import dataclasses

    layout = dataclasses.replace(database.layout, schema="upgrade_0004")
    before = [m for m in bundled_migrations() if m.version < "0004"]
    assert [m.version for m in before][:2] == ["0001", "0002"]
    migrate(database.admin_url, layout, migrations=before)
    with psycopg.connect(database.admin_url) as conn:  # a superuser: past row-level security
        tenant = conn.execute("INSERT INTO upgrade_0004.tenants (slug, name, plan, midtrans_server_key, "
                              "midtrans_environment) VALUES ('shop', 'Shop', 'pro', 'SB-Mid-server-x', 'sandbox') "
                              "RETURNING id").fetchone()
        assert tenant is not None
        customer = conn.execute("INSERT INTO upgrade_0004.customers (tenant_id, email, phone, name) "
                                "VALUES (%s, 'a@b.co', '1', 'A') RETURNING id", (tenant[0],)).fetchone()
        assert customer is not None
        for order_id, token in (("V2-SENT", "tok"), ("V1-SENT", None), ("V2-FAILED", "tok"), ("V2-PENDING", "tok")):
            conn.execute("INSERT INTO upgrade_0004.orders (tenant_id, order_id, customer_id, customer_name, email, "
                         "phone, gross_amount, snap_token) VALUES (%s, %s, %s, 'A', 'a@b.co', '1', 1000, %s)",
                         (tenant[0], order_id, customer[0], token))
        for order_id, status in (("V2-SENT", "sent"), ("V1-SENT", "sent"), ("V2-FAILED", "failed"),
                                 ("V2-PENDING", "pending")):
            conn.execute("INSERT INTO upgrade_0004.notification_outbox (tenant_id, order_id, template, status, "
                         "last_error) VALUES (%s, %s, 'payment_confirmation', %s, %s)",
                         (tenant[0], order_id, status, "SMTPError" if status == "failed" else None))
    report = migrate(database.admin_url, layout)
    assert "0004" in report.applied
    with psycopg.connect(database.admin_url) as conn:
        origins = dict(conn.execute("SELECT order_id, origin FROM upgrade_0004.orders").fetchall())
        rows = conn.execute("SELECT order_id, status, last_error FROM upgrade_0004.notification_outbox "
                            "ORDER BY order_id").fetchall()
        forced = conn.execute("SELECT relname FROM pg_class WHERE relnamespace = 'upgrade_0004'::regnamespace "
                              "AND relforcerowsecurity ORDER BY relname").fetchall()
        conn.execute("DROP SCHEMA upgrade_0004 CASCADE")
    assert origins == {"V2-SENT": "v2", "V1-SENT": "v1", "V2-FAILED": "v2", "V2-PENDING": "v2"}
    assert rows == [("V1-SENT", "skipped", "order created on v1, which sends its emails"),
                    ("V2-FAILED", "dead", "SMTPError"),
                    ("V2-PENDING", "pending", None),
                    ("V2-SENT", "dead", "never emailed: v2 had no SMTP sender before migration 0004")]
    assert {name for (name,) in forced} >= {"orders", "notification_outbox"}  # row-level security forced again

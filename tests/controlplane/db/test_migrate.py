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
    tenant_tables = {"customers", "orders", "payment_events", "notification_outbox", "usage_counters"}
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

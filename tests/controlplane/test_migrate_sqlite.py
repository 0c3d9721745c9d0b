"""v1's SQLite orders into v2: read-only, idempotent, never regressing, verified."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from pathlib import Path

import psycopg
import pytest

from controlplane.cli import ExitStatus, run
from controlplane.db.tenants import NewTenant, TenantAdmin
from controlplane.migrate_sqlite import MigrationProblem, migrate_sqlite
from standins.legacy_v1 import open_database
from tests.conftest import Database

ROWS = [
    ("261225AB12CD", "Budi", "Budi@Example.com", "0812", 150000, "PAID"),
    ("261225AB12CE", "Ani", "ani@example.com", "0813", 99000, "PENDING_PAYMENT"),
    ("261225AB12CF", "Citra", "citra@example.com", "0814", 50000, "pending"),  # the original spelling
    ("261225AB12D0", "Dewi", "dewi@example.com", "0815", 75000, "paid"),
    ("261225AB12D1", "Eko", "ani@example.com", "0816", 10000, "EXPIRED"),  # a repeat customer
    ("BAD-EMAIL", "X", "not-an-email", "1", 1000, "PAID"),
    ("BAD-AMOUNT", "X", "x@example.com", "1", -5, "PAID"),
    ("BAD-STATUS", "X", "x@example.com", "1", 1000, "SHIPPED"),
]


@pytest.fixture
def tenant(database: Database) -> str:
    slug = "m" + secrets.token_hex(3)
    TenantAdmin(database.admin_url, database.layout).add(NewTenant(slug, slug, "enterprise",
                                                                   "SB-Mid-server-MIGRATION01", "sandbox"))
    return slug


@pytest.fixture
def orders_db(tmp_path: Path) -> Path:
    path = tmp_path / "orders.db"
    conn = open_database(path)
    conn.executemany("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                     "VALUES (?, ?, ?, ?, ?, 'midtrans', ?)", ROWS)
    conn.close()
    return path


def v2_orders(database: Database, slug: str) -> dict[str, tuple[str, int]]:
    with psycopg.connect(database.admin_url) as conn:
        rows = conn.execute("SELECT o.order_id, o.payment_status, o.gross_amount FROM payments.orders o "
                            "JOIN payments.tenants t ON t.id = o.tenant_id WHERE t.slug = %s", (slug,)).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def fingerprint(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.parent.glob(path.name + "*"))}


def test_migrates_both_spellings_reports_bad_rows_and_reruns_change_nothing(
    database: Database, tenant: str, orders_db: Path
) -> None:
    before = fingerprint(orders_db)
    report = migrate_sqlite(orders_db, database.app_url, tenant)
    assert (report.read, report.inserted, report.updated, len(report.bad)) == (8, 5, 0, 3)
    assert {order_id for order_id, _ in report.bad} == {"BAD-EMAIL", "BAD-AMOUNT", "BAD-STATUS"}
    assert report.clean
    assert v2_orders(database, tenant) == {
        "261225AB12CD": ("paid", 150000), "261225AB12CE": ("pending", 99000), "261225AB12CF": ("pending", 50000),
        "261225AB12D0": ("paid", 75000), "261225AB12D1": ("expired", 10000)}
    again = migrate_sqlite(orders_db, database.app_url, tenant)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 5)
    after = fingerprint(orders_db)
    # The data file is byte-identical; reading WAL mode needs SQLite's coordination files (which
    # v1's own connection keeps while it runs), and the write-ahead log stays empty: nothing written.
    assert after["orders.db"] == before["orders.db"]
    assert (orders_db.parent / "orders.db-wal").stat().st_size == 0


def test_v2_progress_is_never_regressed_and_v1_progress_is_applied(
    database: Database, tenant: str, orders_db: Path
) -> None:
    migrate_sqlite(orders_db, database.app_url, tenant)
    with psycopg.connect(database.admin_url) as conn:  # a webhook on v2 paid this order meanwhile
        conn.execute("UPDATE payments.orders SET payment_status = 'paid' WHERE order_id = '261225AB12CE' AND "
                     "tenant_id = (SELECT id FROM payments.tenants WHERE slug = %s)", (tenant,))
    writer = sqlite3.connect(orders_db)
    writer.execute("UPDATE orders SET status = 'PAID' WHERE id = '261225AB12CF'")  # v1 progressed too
    writer.commit()
    writer.close()
    report = migrate_sqlite(orders_db, database.app_url, tenant)
    assert (report.updated, report.kept_newer) == (1, 1) and report.clean
    orders = v2_orders(database, tenant)
    assert orders["261225AB12CE"][0] == "paid" and orders["261225AB12CF"][0] == "paid"


def test_reads_while_v1_holds_a_write_transaction(database: Database, tenant: str, orders_db: Path) -> None:
    writer = sqlite3.connect(orders_db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                   "VALUES ('UNCOMMITTED-1', 'Z', 'z@example.com', '1', 5, 'midtrans', 'pending')")
    try:
        report = migrate_sqlite(orders_db, database.app_url, tenant)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert report.inserted == 5 and "UNCOMMITTED-1" not in v2_orders(database, tenant)


def test_dry_run_writes_nothing(database: Database, tenant: str, orders_db: Path) -> None:
    report = migrate_sqlite(orders_db, database.app_url, tenant, dry_run=True)
    assert report.inserted == 5
    assert v2_orders(database, tenant) == {}


def test_cli_exit_codes_and_clear_errors(database: Database, tenant: str, orders_db: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    base = ["migrate", "sqlite", "--database-url", database.app_url]
    assert run([*base, "--sqlite", str(orders_db), "--tenant", tenant]) == ExitStatus.INVALID  # bad rows
    out = capsys.readouterr().out
    assert "5 inserted" in out and "bad row BAD-STATUS: unknown status 'SHIPPED' (not migrated)" in out
    assert "not-an-email" not in out  # a bad row is named by id, its personal data is not printed
    assert run([*base, "--sqlite", str(tmp_path / "none.db"), "--tenant", tenant]) == ExitStatus.INVALID
    assert "none.db: no such file" in capsys.readouterr().err
    with pytest.raises(MigrationProblem, match="no tenant 'nobody'"):
        migrate_sqlite(orders_db, database.app_url, "nobody")

"""v1's PostgreSQL generation (`payment_orders`) into v2: the same migration as from its SQLite file,
read in a read-only transaction, with v1's times kept (in v1's time zone) and verified."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from controlplane.cli import ExitStatus, run
from controlplane.migrate import MigrationProblem, PostgresStore, store_for
from standins.midtrans import FakeMidtrans
from tests.conftest import Database, free_port
from tests.controlplane.migrate.conftest import migrate, v2_orders, v2_times

# The contract's table, as the PostgreSQL generation of v1 creates it.
PAYMENT_ORDERS = """
CREATE TABLE payment_orders (
  id TEXT PRIMARY KEY, customer_name TEXT NOT NULL, email TEXT NOT NULL, phone TEXT NOT NULL,
  amount NUMERIC(15,2) NOT NULL, payment_method TEXT NOT NULL, status TEXT DEFAULT 'pending',
  payment_url TEXT, token TEXT, created_at TIMESTAMP DEFAULT NOW(), updated_at TIMESTAMP
)"""
ROWS = [  # v1's lower-case spelling; times as v1's NOW() wrote them, in the server's zone (Jakarta here)
    ("261225AB12CD", "Budi", "budi@example.com", "0812", Decimal("150000.00"), "paid", "2025-12-26 16:15:00",
     "2025-12-26 16:20:00"),
    ("261225AB12CE", "Ani", "ani@example.com", "0813", Decimal("99000.00"), "pending", "2025-11-30 23:59:59",
     None),  # never updated: v1 leaves updated_at NULL
    ("261225AB12CF", "Citra", "citra@example.com", "0814", Decimal("99000.50"), "pending", "2025-12-01 08:00:00",
     None),
]


@pytest.fixture
def v1_url(empty_database: str) -> str:
    """A database of its own holding v1's payment_orders, in a server zone other than UTC."""
    with psycopg.connect(empty_database, autocommit=True) as conn:
        name = conn.info.dbname
        conn.execute(f"ALTER DATABASE \"{name}\" SET timezone = 'Asia/Jakarta'")
    with psycopg.connect(empty_database) as conn:
        conn.execute(PAYMENT_ORDERS)
        conn.cursor().executemany("INSERT INTO payment_orders (id, customer_name, email, phone, amount, "
                                  "payment_method, status, created_at, updated_at) "
                                  "VALUES (%s, %s, %s, %s, %s, 'midtrans', %s, %s, %s)", ROWS)
    return as_url(empty_database)


def as_url(conninfo: str) -> str:
    """`--from` takes an address as a URL."""
    info = conninfo_to_dict(conninfo)
    return f"postgresql://{info['user']}@{info['host']}:{info['port']}/{info['dbname']}"


def v1_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT * FROM payment_orders ORDER BY id").fetchall()


async def test_migrates_payment_orders_keeping_created_at_and_reruns_change_nothing(
    database: Database, tenant: str, v1_url: str, midtrans: FakeMidtrans
) -> None:
    before = v1_rows(v1_url)
    store = store_for(v1_url)
    assert isinstance(store, PostgresStore) and store.count() == 3
    report = await migrate(store, database.app_url, tenant)
    assert (report.read, report.inserted, report.updated, report.confirmed) == (3, 2, 0, 1) and report.clean
    assert report.bad == [("261225AB12CF", "amount 99000.50 has decimals (v2 holds whole rupiah; not rounded)")]
    assert v2_orders(database, tenant) == {"261225AB12CD": ("paid", 150000), "261225AB12CE": ("pending", 99000)}
    # 16:15 in Jakarta is 09:15 UTC; a NULL updated_at is the order's creation.
    assert v2_times(database, tenant) == {
        "261225AB12CD": (datetime(2025, 12, 26, 9, 15, tzinfo=UTC), datetime(2025, 12, 26, 9, 20, tzinfo=UTC)),
        "261225AB12CE": (datetime(2025, 11, 30, 16, 59, 59, tzinfo=UTC),) * 2}

    again = await migrate(store, database.app_url, tenant)
    assert (again.inserted, again.updated, again.unchanged, len(again.bad)) == (0, 0, 2, 1) and again.clean
    assert v1_rows(v1_url) == before  # read, never written

    # The verification compares the times too.
    with psycopg.connect(database.admin_url) as conn:
        conn.execute("UPDATE payments.orders SET created_at = created_at + interval '7 hours', origin = 'v2' "
                     "WHERE order_id = '261225AB12CE'")
    checked = await migrate(store, database.app_url, tenant, dry_run=True)
    assert checked.differences == [("261225AB12CE", "created_at differ between v1 and v2")]


async def test_cli_migrates_from_postgresql_and_says_what_it_could_not(
    database: Database, tenant: str, v1_url: str, midtrans: FakeMidtrans,
    capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["migrate", "--tenant", tenant, "--database-url", database.app_url]
    assert await asyncio.to_thread(run, [*base, "--from", v1_url]) == ExitStatus.INVALID  # a bad row
    out = capsys.readouterr().out
    assert "3 v1 rows read" in out and "2 inserted" in out
    assert "  bad row 261225AB12CF: amount 99000.50 has decimals (v2 holds whole rupiah; not rounded)" in out
    with psycopg.connect(v1_url) as conn:
        conn.execute("UPDATE payment_orders SET amount = 99000 WHERE id = '261225AB12CF'")  # ops fixed it on v1
    assert await asyncio.to_thread(run, [*base, "--from", v1_url]) == ExitStatus.OK
    assert "1 inserted" in capsys.readouterr().out

    assert await asyncio.to_thread(run, [*base, "--from", "mysql://x"]) == ExitStatus.USAGE
    assert "sqlite:PATH (orders.db) or postgresql://" in capsys.readouterr().err
    assert await asyncio.to_thread(run, [*base, "--from", as_url(database.app_url)]) == ExitStatus.INVALID
    assert "payment_orders" in capsys.readouterr().err  # v2's database is not v1's


def test_a_password_in_the_address_is_never_shown() -> None:
    store = PostgresStore(f"postgresql://v1:s3cret@127.0.0.1:{free_port()}/payments")
    assert "s3cret" not in store.name
    with pytest.raises(MigrationProblem, match="cannot connect") as raised:
        store.count()
    assert "s3cret" not in str(raised.value)

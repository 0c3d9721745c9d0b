"""What the migration tests share: a tenant, the fake Midtrans holding v1's really paid orders, a v1
SQLite file of both spellings and bad rows, and read-backs of v2's orders."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from controlplane.db.tenants import NewTenant, TenantAdmin
from controlplane.migrate import Report, SqliteStore, V1Store
from controlplane.migrate import migrate as migrate_orders
from standins.legacy_v1 import open_database
from standins.midtrans import FakeMidtrans, Transaction
from tests.conftest import Database

KEY = "SB-Mid-server-MIGRATION01"
CREATED_AT, UPDATED_AT = "2025-12-26 09:15:00", "2025-12-26 09:20:30"  # as CURRENT_TIMESTAMP writes them (UTC)

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
    TenantAdmin(database.admin_url, database.layout).add(NewTenant(slug, slug, "enterprise", KEY, "sandbox"))
    return slug


def settle(midtrans: FakeMidtrans, order_id: str, amount: int, status: str = "settlement") -> None:
    """Midtrans holds this transaction (what Get Status reports for it)."""
    midtrans.transactions[(KEY, order_id)] = Transaction(order_id, amount, KEY, "sandbox", "token",
                                                         f"tx-{order_id}", [], status=status)


@pytest.fixture
async def midtrans(aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> FakeMidtrans:
    """The fake Midtrans as every migration here (and the CLI) reaches it; by default it holds the
    v1 rows that really were paid."""
    fake = FakeMidtrans([KEY])
    server = await aiohttp_server(fake.app())
    monkeypatch.setenv("DUALSTACK_MIDTRANS_CORE_URL_SANDBOX", str(server.make_url("/sandbox")))
    settle(fake, "261225AB12CD", 150000)
    settle(fake, "261225AB12D0", 75000)
    return fake


async def migrate(v1: Path | V1Store, *args: Any, **kwargs: Any) -> Report:
    """The blocking migration off the event loop, so the fake Midtrans can answer it (a Path is an orders.db)."""
    return await asyncio.to_thread(migrate_orders, SqliteStore(v1) if isinstance(v1, Path) else v1, *args, **kwargs)


@pytest.fixture
def orders_db(tmp_path: Path) -> Path:
    path = tmp_path / "orders.db"
    conn = open_database(path)
    conn.executemany("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status, "
                     "created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'midtrans', ?, ?, ?)",
                     [(*row, CREATED_AT, UPDATED_AT) for row in ROWS])
    conn.close()
    return path


def v2_orders(database: Database, slug: str) -> dict[str, tuple[str, int]]:
    with psycopg.connect(database.admin_url) as conn:
        rows = conn.execute("SELECT o.order_id, o.payment_status, o.gross_amount FROM payments.orders o "
                            "JOIN payments.tenants t ON t.id = o.tenant_id WHERE t.slug = %s", (slug,)).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def v2_times(database: Database, slug: str) -> dict[str, tuple[datetime, datetime]]:
    with psycopg.connect(database.admin_url) as conn:
        rows = conn.execute("SELECT o.order_id, o.created_at, o.updated_at FROM payments.orders o "
                            "JOIN payments.tenants t ON t.id = o.tenant_id WHERE t.slug = %s", (slug,)).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def v2_execute(database: Database, slug: str, sql: str, *params: Any) -> None:
    """An UPDATE of the tenant's orders (`tenant_id = %s` is its id), as v2 itself or an older migration did."""
    with psycopg.connect(database.admin_url) as conn:
        tenant_id = conn.execute("SELECT id FROM payments.tenants WHERE slug = %s", (slug,)).fetchone()[0]
        conn.execute(sql, (*params, tenant_id))


def fingerprint(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.parent.glob(path.name + "*"))}

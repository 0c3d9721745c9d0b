"""v1's two store generations: the SQLite `orders` file (rollback journal, as the seed's v1 leaves
it) and the PostgreSQL `payment_orders` table (amounts NUMERIC(15,2)), behind one small interface."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import psycopg

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
  id TEXT PRIMARY KEY,
  customer_name TEXT NOT NULL,
  email TEXT NOT NULL,
  phone TEXT NOT NULL,
  amount INTEGER NOT NULL,
  payment_method TEXT NOT NULL,
  status TEXT DEFAULT 'pending',
  token TEXT,
  payment_url TEXT,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  updated_at DATETIME DEFAULT CURRENT_TIMESTAMP
);
"""
POSTGRESQL_SCHEMA = """
CREATE TABLE IF NOT EXISTS payment_orders (
  id TEXT PRIMARY KEY,
  customer_name TEXT NOT NULL,
  email TEXT NOT NULL,
  phone TEXT NOT NULL,
  amount NUMERIC(15,2) NOT NULL,
  payment_method TEXT NOT NULL,
  status TEXT DEFAULT 'pending',
  payment_url TEXT,
  token TEXT,
  created_at TIMESTAMP DEFAULT NOW(),
  updated_at TIMESTAMP
)
"""


class StoreError(Exception):
    """A database error, as v1 passes it on (its message becomes a 500's)."""


@dataclass(frozen=True)
class NewOrder:
    id: str
    name: str
    email: str
    phone: str
    amount: str  # as the client sent it: the database decides whether it is a number
    status: str
    token: str | None = None
    payment_url: str | None = None


@dataclass(frozen=True)
class StoredOrder:
    id: str
    status: str
    amount: Any  # int (SQLite) or Decimal (PostgreSQL)
    customer_name: str
    email: str
    created_at: Any


class OrderStore(Protocol):
    generation: str

    async def insert(self, order: NewOrder) -> None: ...
    async def set_status(self, order_id: str, status: str) -> None: ...
    async def orders(self, order_id: str | None = None) -> list[StoredOrder]: ...
    async def open(self) -> None: ...
    async def close(self) -> None: ...


_COLUMNS = "id, status, amount, customer_name, email, created_at"


def open_database(path: str | Path) -> sqlite3.Connection:
    """The SQLite generation's orders.db with v1's schema, in SQLite's default rollback-journal mode."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.executescript(SQLITE_SCHEMA)
    return conn


class SqliteOrders:
    generation = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def insert(self, order: NewOrder) -> None:
        try:
            amount = Decimal(order.amount)  # v1's column is INTEGER: IDR has no decimals there
        except ArithmeticError:
            raise StoreError(f"SQLITE_MISMATCH: datatype mismatch ({order.amount[:20]!r})") from None
        try:
            self.conn.execute(
                "INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status, token, "
                "payment_url) VALUES (?, ?, ?, ?, ?, 'midtrans', ?, ?, ?)",
                (order.id, order.name, order.email, order.phone,
                 int(amount) if amount == amount.to_integral_value() else float(amount), order.status,
                 order.token, order.payment_url))
        except sqlite3.Error as exc:
            raise StoreError(f"SQLITE_CONSTRAINT: {exc}") from None

    async def set_status(self, order_id: str, status: str) -> None:
        self.conn.execute("UPDATE orders SET status = ?, updated_at = CURRENT_TIMESTAMP WHERE id = ?",
                          (status, order_id))

    async def orders(self, order_id: str | None = None) -> list[StoredOrder]:
        where, args = ("WHERE id = ?", (order_id,)) if order_id is not None else ("ORDER BY created_at DESC", ())
        return [StoredOrder(*row) for row in self.conn.execute(f"SELECT {_COLUMNS} FROM orders {where}", args)]

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        self.conn.close()


class PostgresOrders:
    """One connection, one statement at a time (v1's pool of 10 is not what is being imitated)."""

    generation = "postgresql"

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.lock = asyncio.Lock()

    async def open(self) -> None:
        """Connect (in the server's event loop) and create payment_orders if it is missing."""
        self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=10)
        await self.conn.execute(POSTGRESQL_SCHEMA)

    async def _run(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        assert self.conn is not None, "open() first"
        async with self.lock:
            try:
                cursor = await self.conn.execute(sql, args)
                return await cursor.fetchall() if cursor.description else []
            except psycopg.Error as exc:
                raise StoreError(exc.diag.message_primary or type(exc).__name__) from None

    async def insert(self, order: NewOrder) -> None:
        await self._run("INSERT INTO payment_orders (id, customer_name, email, phone, amount, payment_method, "
                        "status, token, payment_url) VALUES (%s, %s, %s, %s, %s, 'midtrans', %s, %s, %s)",
                        (order.id, order.name, order.email, order.phone, order.amount, order.status,
                         order.token, order.payment_url))

    async def set_status(self, order_id: str, status: str) -> None:
        await self._run("UPDATE payment_orders SET status = %s, updated_at = NOW() WHERE id = %s", (status, order_id))

    async def orders(self, order_id: str | None = None) -> list[StoredOrder]:
        where, args = ("WHERE id = %s", (order_id,)) if order_id is not None else ("ORDER BY created_at DESC", ())
        return [StoredOrder(*row) for row in await self._run(f"SELECT {_COLUMNS} FROM payment_orders {where}", args)]

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

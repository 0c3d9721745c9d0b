"""The stand-ins' tests share the fake Midtrans, and the v1 stand-in in either of its generations."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from standins.legacy_v1 import KEEPALIVE_TIMEOUT_S, Admin, LegacyV1, PostgresOrders, SqliteOrders, open_database
from standins.legacy_v1.stores import OrderStore
from standins.midtrans import FakeMidtrans

KEY = "SB-Mid-server-STANDIN0001"
ADMIN_PASSWORD = "standin-admin-pw"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest.fixture
async def midtrans(aiohttp_server: Any) -> tuple[FakeMidtrans, str]:
    fake = FakeMidtrans([KEY, "Mid-server-PRODUCTION01"])
    server = await aiohttp_server(fake.app())
    return fake, str(server.make_url("")).rstrip("/")


@dataclass
class V1:
    """A running stand-in, and a way to read its store behind its back."""

    url: str
    generation: str
    location: str  # the orders.db path, or the database URL
    fake: FakeMidtrans

    def rows(self, columns: str = "id, status") -> list[tuple[Any, ...]]:
        if self.generation == "sqlite":
            with sqlite3.connect(self.location) as conn:
                return conn.execute(f"SELECT {columns} FROM orders ORDER BY id").fetchall()
        with psycopg.connect(self.location) as pg:
            return pg.execute(f"SELECT {columns} FROM payment_orders ORDER BY id").fetchall()

    def status(self, order_id: str) -> str | None:
        found = [status for id_, status in self.rows() if id_ == order_id]
        return found[0] if found else None


@pytest.fixture(params=["sqlite", "postgresql"])
async def v1(request: pytest.FixtureRequest, aiohttp_server: Any, midtrans: tuple[FakeMidtrans, str],
             tmp_path: Path) -> AsyncIterator[V1]:
    """The stand-in in one generation: the PostgreSQL one in a database of its own."""
    fake, url = midtrans
    store: OrderStore
    if request.param == "sqlite":
        location = str(tmp_path / "orders.db")
        store = SqliteOrders(open_database(location))
    else:
        location = request.getfixturevalue("empty_database")
        store = PostgresOrders(location)
    stand_in = LegacyV1(store, server_key=KEY, snap_url=f"{url}/sandbox/snap/v1/transactions",
                        snap_timeout_s=0.5, admin=Admin(store, password=ADMIN_PASSWORD))
    server = await aiohttp_server(stand_in.app(), keepalive_timeout=KEEPALIVE_TIMEOUT_S)
    fake.default_notification_url = str(server.make_url("/webhooks/midtrans"))
    yield V1(str(server.make_url("")).rstrip("/"), request.param, location, fake)

"""The preflight's migration check refuses a v1 store that lacks the orders the router saw v1 create
or answer for (a store with other orders in it, such as a stale copy, is no proof), and passes the one
v1 writes. On the real stack: the router in front of v1's PostgreSQL generation, the state database,
v2 for the dry-run migration."""

from __future__ import annotations

import asyncio
import sqlite3

import aiohttp
import psycopg

from controlplane.cutover.preflight import migration
from controlplane.migrate import PostgresStore, SqliteStore
from controlplane.state import v1_orders_seen
from tests.conftest import wait_until
from tests.fixtures.cutover_world import World


async def test_a_store_lacking_orders_the_router_saw_v1_take_is_refused_and_v1s_own_passes(world_pg: World) -> None:
    w, slug = world_pg, world_pg.tenant.slug
    async with aiohttp.ClientSession() as session:
        for order_id in ("SEEN-1", "SEEN-2"):
            body = {"orderId": order_id, "amount": 150000, "email": "budi@example.com", "phone": "0812",
                    "name": "Budi", "paymentMethod": "bca"}
            async with session.post(f"{w.router.url}/payment/create", json=body,
                                    headers={"Host": f"{slug}.agentbar.ai"}) as response:
                assert response.status == 200, await response.text()

    def recorded() -> int:
        with psycopg.connect(w.state.control_url) as conn:
            return len(v1_orders_seen.recent(conn, w.state.layout.schema, slug))

    await wait_until(lambda: recorded() == 2)
    # The leftover orders.db next to the PostgreSQL generation, holding some other order: not empty.
    with sqlite3.connect(w.orders_db) as stale:
        stale.execute("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                      "VALUES ('EARLIER-1', 'Sari', 'sari@example.com', '0812', 50000, 'midtrans', 'pending')")
    wrong = await asyncio.to_thread(migration, w.request("v2", v1=SqliteStore(w.orders_db)))
    assert not wrong.ok
    assert wrong.detail.startswith(
        f"the store you gave (sqlite:{w.orders_db}) lacks 2 orders the router saw v1 create in the last 24 h, "
        "e.g. "), wrong.detail
    assert "SEEN-1" in wrong.detail and "SEEN-2" in wrong.detail and "is this the store v1 writes?" in wrong.detail

    assert w.v1_database_url is not None
    right = await asyncio.to_thread(migration, w.request("v2", v1=PostgresStore(w.v1_database_url)))
    assert right.ok, right.detail
    assert right.detail.startswith("2 v1 orders: 2 to insert")
    assert "it holds the 2 orders the router saw v1 take in the last 24 h" in right.detail


async def test_without_a_state_database_the_check_says_what_it_did_not_check(world_pg: World) -> None:
    with sqlite3.connect(world_pg.orders_db) as stale:
        stale.execute("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                      "VALUES ('EARLIER-1', 'Sari', 'sari@example.com', '0812', 50000, 'midtrans', 'pending')")
    check = await asyncio.to_thread(migration, world_pg.request("v2", v1=SqliteStore(world_pg.orders_db),
                                                                state_url=None))
    assert check.ok, check.detail
    assert check.detail.endswith("orders the router saw v1 take: not checked (no --state-database-url)")

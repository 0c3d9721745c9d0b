"""The router samples the orders v1 created or answered for into the state database, through its own
role (which may only insert them), on the real stack: the router, v1's PostgreSQL generation (the one
with a status route) and the state database. What v1 refused, or answered without an order, is not
recorded; neither is what v2 created."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import psycopg
import pytest
from psycopg import errors

from controlplane.state import v1_orders_seen
from controlplane.state.schema import STATE_SCHEMA
from proxy.router.v1_orders import SAMPLE_PER_MINUTE, V1OrdersSeen, order_id, seen_as
from tests.conftest import wait_until
from tests.fixtures.cutover_world import World


def order(order_id: str, **changes: Any) -> dict[str, Any]:
    return {"orderId": order_id, "amount": 150000, "email": "budi@example.com", "phone": "0812", "name": "Budi",
            "paymentMethod": "bca", **changes}


def seen(w: World, tenant: str) -> dict[str, str]:
    with psycopg.connect(w.state.control_url) as conn:
        return v1_orders_seen.recent(conn, STATE_SCHEMA, tenant)


async def test_orders_v1_created_or_answered_for_are_recorded_and_nothing_else(world_pg: World) -> None:
    w, slug = world_pg, world_pg.tenant.slug
    with psycopg.connect(w.v1_database_url or "") as v1:  # an order v1 took before this router saw any
        v1.execute("INSERT INTO payment_orders (id, customer_name, email, phone, amount, payment_method) "
                   "VALUES ('OLD-1', 'Sari', 'sari@example.com', '0812', 50000, 'bca')")
    host = {"Host": f"{slug}.agentbar.ai"}
    async with aiohttp.ClientSession() as session:
        for body, expected in [(order("NEW-1"), 200), (order("NEW-1"), 500),  # v1: a duplicate id is a 500
                               (order("BAD-1", email="a@b"), 400)]:
            async with session.post(f"{w.router.url}/payment/create", json=body, headers=host) as response:
                assert response.status == expected, await response.text()
                assert response.headers["X-Dualstack-Backend"] == "v1"
        for path, expected in [("/orders/OLD-1/status", 200), ("/orders/NOPE-1/status", 404)]:
            async with session.get(f"{w.router.url}{path}", headers=host) as response:
                assert response.status == expected
    await wait_until(lambda: len(seen(w, slug)) >= 2)
    assert seen(w, slug) == {"NEW-1": "created", "OLD-1": "answered"}


@pytest.mark.parametrize("statement", [
    f"SELECT order_id FROM {STATE_SCHEMA}.v1_orders_seen",
    f"DELETE FROM {STATE_SCHEMA}.v1_orders_seen",
    f"UPDATE {STATE_SCHEMA}.v1_orders_seen SET seen_at = now()",
], ids=["read", "delete", "update"])
def test_the_router_role_only_adds_orders_seen(world_pg: World, statement: str) -> None:
    with psycopg.connect(world_pg.state.router_url) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)


async def test_the_sample_is_bounded_per_tenant() -> None:
    store = V1OrdersSeen("postgresql://127.0.0.1:1/unused", STATE_SCHEMA)  # never opened: nothing is written
    while True:  # within one minute (the count restarts each minute)
        minute, store.dropped, taken = time.time() // 60, 0, 0
        for n in range(SAMPLE_PER_MINUTE + 5):
            if store.wants("busy"):
                store.add("busy", "answered", f"/orders/B-{n}/status")
                taken += 1
        if time.time() // 60 == minute:
            break
    assert taken <= SAMPLE_PER_MINUTE and store.dropped >= 5
    assert store.wants("quiet")  # another tenant's share is its own


@pytest.mark.parametrize(("seen", "raw", "expected"), [
    ("created", b'{"orderId": "261225AB12CD"}', "261225AB12CD"),
    ("created", b'{"orderId": 12}', None),
    ("created", b'{"orderId": "a b"}', None),
    ("created", b"not json", None),
    ("created", b"[1]", None),
    ("answered", "/orders/261225AB12CD/status", "261225AB12CD"),
    ("answered", "/orders/" + "x" * 65 + "/status", None),
])
def test_an_id_is_recorded_only_when_well_formed(seen: Any, raw: bytes | str, expected: str | None) -> None:
    assert order_id(seen, raw) == expected


def test_only_a_2xx_to_a_create_or_a_status_read_is_a_sighting() -> None:
    assert seen_as("POST", "/payment/create", 201) == "created"
    assert seen_as("GET", "/orders/X/status", 200) == "answered"
    assert seen_as("GET", "/orders/X/status", 404) is None
    assert seen_as("GET", "/payment/create", 200) is None

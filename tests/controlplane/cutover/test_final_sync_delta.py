"""The final sync under the write hold does as little as it can (real stack: v1's SQLite store, real
v2, the fake Midtrans): on the way back, the preflight's reverse_sync check verified both sides up to
its last pass, so under the hold only the orders v2 changed since are verified again; to v2, a claim
the bulk sync already judged is not asked of Midtrans again."""

from __future__ import annotations

import asyncio
import sqlite3

import psycopg

from controlplane.cli import run
from controlplane.cutover import Cutover
from controlplane.cutover.journal import Boundary, Step
from controlplane.errors import ExitStatus
from controlplane.state.cutovers import CutoverStore
from tests.fixtures.cutover_world import World, v1_holds_an_order

OLD_ORDERS = 5


async def test_under_the_hold_the_way_back_verifies_only_what_v2_changed_since_the_preflight(world: World) -> None:
    v1_holds_an_order(world)
    slug, db = world.tenant.slug, world.stack.database
    assert await asyncio.to_thread(Cutover(world.request("v2"), say=lambda _: None).run) is True
    for n in range(OLD_ORDERS):
        await world.stack.create(world.tenant, f"OLD-{n}", amount=10000 + n)
    assert await asyncio.to_thread(run, [
        "reverse-sync", "--from", f"sqlite:{world.orders_db}", "--tenant", slug, "--database-url", db.app_url,
        "--state-database-url", world.state.control_url, "--state-schema", world.state.layout.schema]) == ExitStatus.OK
    # The tenant's orders were last changed on v2 an hour ago (long before the preflight's passes).
    with psycopg.connect(db.admin_url) as conn:
        conn.execute("UPDATE payments.orders SET updated_at = updated_at - interval '1 hour' WHERE tenant_id = "
                     "(SELECT id FROM payments.tenants WHERE slug = %s)", (slug,))

    def v2_takes_one_more(at: Step, where: Boundary) -> None:  # after the preflight, before the hold
        if (at, where) == (Step.HOLD, "begin"):
            asyncio.run(world.stack.create(world.tenant, "LATE-1", amount=90000))

    said: list[str] = []
    back = Cutover(world.request("v1"), say=said.append, on_step=v2_takes_one_more)
    assert await asyncio.to_thread(back.run) is True, said
    assert any(f"v1 holds all {OLD_ORDERS + 1} orders v2 held at" in line for line in said), said  # the preflight
    store = CutoverStore(world.state.control_url, world.state.layout.schema)
    latest = store.latest(slug)
    assert latest is not None
    final = next(e.detail for e in store.entries(latest.id) if e.step == "final_sync" and e.status == "done")
    assert (final["clean"], final["copied"], final["verified"]) == (True, 1, 1), final
    assert "verified_since" in final
    assert any(line.startswith("final sync: under the hold, v1 holds all 1 orders v2 changed since the preflight")
               for line in said), said
    assert "LATE-1" in world.v1_statuses()


async def test_under_the_hold_the_final_sync_to_v2_asks_midtrans_nothing_the_bulk_sync_judged(world: World) -> None:
    v1_holds_an_order(world)
    with sqlite3.connect(world.orders_db) as v1:  # v1 says paid; Midtrans knows no such payment
        v1.execute("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                   "VALUES ('CLAIMED-1', 'Sari', 'sari@example.com', '0812', 50000, 'midtrans', 'PAID')")
    asked: dict[tuple[Step, Boundary], int] = {}

    def count_get_status(at: Step, where: Boundary) -> None:
        asked[(at, where)] = world.stack.midtrans.status_calls

    said: list[str] = []
    cutover = Cutover(world.request("v2"), say=said.append, on_step=count_get_status)
    assert await asyncio.to_thread(cutover.run) is True, said  # a claim without evidence is said, not a stop
    assert asked[(Step.BULK_SYNC, "end")] > asked[(Step.BULK_SYNC, "begin")]  # the bulk sync asked
    assert asked[(Step.FINAL_SYNC, "end")] == asked[(Step.FINAL_SYNC, "begin")], said  # not again under the hold
    assert ("  CLAIMED-1: paid on v1 without evidence: not applied (Midtrans does not know this order, asked "
            in said[said.index(next(line for line in said if line.startswith("final sync:"))) + 1]), said

"""What a cutover to v2 does right after the flip, on the real stack: the reverse sync is begun (and
its first pass made) before the held writes are released, so a run that stops before the routers
confirm still leaves v1 covered; a re-run goes on from the record this cutover began and never
re-opens one ops completed."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from controlplane.cli import run
from controlplane.cutover import Cutover
from controlplane.cutover.journal import Boundary, Step, StepHook
from controlplane.errors import ExitStatus, Interrupted
from controlplane.state.cutovers import CutoverStore
from controlplane.state.reverse_syncs import ReverseSyncRecord, ReverseSyncStore
from tests.fixtures.cutover_world import World, v1_holds_an_order


def interrupt_at(step: Step, boundary: Boundary) -> StepHook:
    def hook(at: Step, where: Boundary) -> None:
        if (at, where) == (step, boundary):
            raise KeyboardInterrupt
    return hook


def reverse_sync_of(world: World) -> ReverseSyncRecord | None:
    return ReverseSyncStore(world.state.control_url, world.state.layout.schema).get(world.tenant.slug)


@pytest.mark.parametrize("step", [Step.RELEASE, Step.ROUTERS_CONFIRMED])
async def test_stopped_before_the_routers_confirm_the_reverse_sync_already_runs_and_a_rerun_goes_on_from_it(
        world: World, step: Step) -> None:
    v1_holds_an_order(world)
    with pytest.raises(Interrupted):
        await asyncio.to_thread(Cutover(world.request("v2"), say=lambda _: None,
                                        on_step=interrupt_at(step, "begin")).run)
    begun = reverse_sync_of(world)
    assert begun is not None and begun.running and begun.watermark is not None  # its first pass is made
    await world.stack.create(world.tenant, "TAKEN-ON-V2", amount=70000)  # released writes v2 takes meanwhile

    said: list[str] = []
    assert await asyncio.to_thread(Cutover(world.request("v2"), say=said.append).run) is True
    again = reverse_sync_of(world)
    assert again is not None and again.running and again.started_at == begun.started_at  # not begun anew
    assert again.watermark is not None and again.watermark > begun.watermark
    assert any(line.startswith("reverse sync: going on; first pass:") for line in said), said
    assert "TAKEN-ON-V2" in world.v1_statuses()


async def test_a_rerun_of_a_finished_cutover_leaves_a_completed_reverse_sync_completed(world: World) -> None:
    v1_holds_an_order(world)
    assert await asyncio.to_thread(Cutover(world.request("v2"), say=lambda _: None).run) is True
    assert run(["cutover", "complete", world.tenant.slug, "--state-database-url", world.state.control_url,
                "--state-schema", world.state.layout.schema]) == ExitStatus.OK
    completed = reverse_sync_of(world)
    assert completed is not None and not completed.running

    said: list[str] = []
    assert await asyncio.to_thread(Cutover(world.request("v2"), say=said.append).run) is True
    assert reverse_sync_of(world) == completed
    assert any(line.startswith("reverse sync: completed at ") and "left completed" in line for line in said), said


def hold_lasts_its_bound(late_write: Callable[[], None]) -> StepHook:
    """Right after the flip, the writes stay held past cutover.hold_s (3 s here), and meanwhile a write
    reaches the old backend: what a router that ended the hold on its own clock may have done."""
    def hook(at: Step, where: Boundary) -> None:
        if (at, where) == (Step.FLIP, "end"):
            late_write()
            time.sleep(HOLD_S + 0.2)
    return hook


HOLD_S = 3.0


def with_hold_s(world: World) -> None:
    path = world.router.config_path
    path.write_text(path.read_text().replace("hold_s: 10", f"hold_s: {HOLD_S:g}"))


def journal_detail(world: World, step: Step) -> dict[str, Any]:
    store = CutoverStore(world.state.control_url, world.state.layout.schema)
    latest = store.latest(world.tenant.slug)
    assert latest is not None
    return next(e.detail for e in reversed(store.entries(latest.id)) if e.step == step.value and e.status == "done")


async def test_a_hold_that_lasted_its_bound_is_followed_by_a_catch_up_sync_into_v2(world: World) -> None:
    v1_holds_an_order(world)
    with_hold_s(world)

    def v1_takes_a_late_order() -> None:
        with sqlite3.connect(world.orders_db) as v1:
            v1.execute("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                       "VALUES ('LATE-ON-V1', 'Sari', 'sari@example.com', '0812', 60000, 'midtrans', 'pending')")

    said: list[str] = []
    cutover = Cutover(world.request("v2"), say=said.append, on_step=hold_lasts_its_bound(v1_takes_a_late_order))
    assert await asyncio.to_thread(cutover.run) is True, said
    assert any(line.startswith("release: warning: the writes of ") and "one catch-up sync carries them to v2" in line
               for line in said), said
    assert journal_detail(world, Step.RELEASE)["catch_up"] == {"clean": True, "copied": 1}
    with psycopg.connect(world.stack.database.admin_url) as conn:
        on_v2 = conn.execute("SELECT o.payment_status FROM payments.orders o JOIN payments.tenants t ON t.id = o.tenant_id "
                             "WHERE t.slug = %s AND o.order_id = 'LATE-ON-V1'", (world.tenant.slug,)).fetchall()
    assert on_v2 == [("pending",)]


async def test_a_hold_that_lasted_its_bound_on_the_way_back_is_followed_by_a_catch_up_reverse_pass(
        world: World) -> None:
    v1_holds_an_order(world)
    assert await asyncio.to_thread(Cutover(world.request("v2"), say=lambda _: None).run) is True
    with_hold_s(world)

    def v2_takes_a_late_order() -> None:
        asyncio.run(world.stack.create(world.tenant, "LATE-ON-V2", amount=80000))

    said: list[str] = []
    back = Cutover(world.request("v1"), say=said.append, on_step=hold_lasts_its_bound(v2_takes_a_late_order))
    assert await asyncio.to_thread(back.run) is True, said
    assert any("one catch-up sync carries them to v1" in line for line in said), said
    assert journal_detail(world, Step.RELEASE)["catch_up"] == {"clean": True, "copied": 1}
    assert "LATE-ON-V2" in world.v1_statuses()


async def test_the_first_reverse_pass_under_the_hold_reads_only_what_v2_changed_since_the_baseline(
        world: World) -> None:
    """The full reverse pass runs before the hold (writes flowing to v1); the recorded first pass after
    the flip, with the writes still held, reads only the orders v2 changed since it."""
    v1_holds_an_order(world)
    with sqlite3.connect(world.orders_db) as v1:
        v1.executemany("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                       "VALUES (?, 'Sari', 'sari@example.com', '0812', 50000, 'midtrans', 'pending')",
                       [(f"OLDER-{n}",) for n in range(20)])

    def the_orders_are_old(at: Step, where: Boundary) -> None:  # after the baseline, before the hold
        if (at, where) == (Step.HOLD, "begin"):  # (on both sides alike: the final sync finds nothing to do)
            with sqlite3.connect(world.orders_db) as v1:
                v1.execute("UPDATE orders SET created_at = datetime(created_at, '-1 hour'), "
                           "updated_at = datetime(updated_at, '-1 hour')")
            with psycopg.connect(world.stack.database.admin_url) as conn:
                conn.execute("UPDATE payments.orders SET created_at = created_at - interval '1 hour', updated_at = "
                             "updated_at - interval '1 hour' WHERE tenant_id = (SELECT id FROM payments.tenants "
                             "WHERE slug = %s)", (world.tenant.slug,))

    said: list[str] = []
    assert await asyncio.to_thread(Cutover(world.request("v2"), say=said.append, on_step=the_orders_are_old).run)
    assert any(line.startswith("reverse baseline (before the hold): 21 v2 orders read") for line in said), said
    assert journal_detail(world, Step.BULK_SYNC)["reverse_baseline"] is not None
    started = journal_detail(world, Step.REVERSE_SYNC_STARTED)
    assert (started["started"], started["read"]) == (True, 0), "\n".join(line for line in said if "sync" in line)
    record = reverse_sync_of(world)
    assert record is not None and record.running and record.watermark is not None

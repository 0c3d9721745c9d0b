"""The journaled cutover on the real stack: stopped at each step in turn (Ctrl-C raised from the step
hook the driver offers, or a real SIGINT to the CLI while it waits for a router), then run again,
it ends exactly where an uninterrupted cutover ends; `dualstack cutover status` shows the journal."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from controlplane.cli import run
from controlplane.cutover import Cutover, CutoverStopped
from controlplane.cutover.journal import Boundary, Step, StepHook, steps_to
from controlplane.cutover.probe import router_serves
from controlplane.cutover.status import latest_per_step
from controlplane.errors import ExitStatus, Interrupted
from controlplane.state.cutovers import CutoverStore
from controlplane.state.holds import HoldStore
from tests.conftest import REPO, wait_until
from tests.fixtures.cutover_world import World, v1_holds_an_order

TO_V2 = steps_to("v2")


def interrupt_at(step: Step, boundary: Boundary) -> StepHook:
    def hook(at: Step, where: Boundary) -> None:
        if (at, where) == (step, boundary):
            raise KeyboardInterrupt
    return hook


def journal_of(world: World) -> dict[str, str]:
    """The latest cutover's outcome and each step's newest status."""
    store = CutoverStore(world.state.control_url, world.state.layout.schema)
    record = store.latest(world.tenant.slug)
    assert record is not None
    steps = {step.value: entry.status if entry else "not started"
             for step, entry in latest_per_step(record, store.entries(record.id))}
    return {"outcome": str(record.outcome), **steps}


async def end_state(world: World) -> dict[str, Any]:
    """What a cutover to v2 leaves behind: the file, who the router serves, v1's orders in v2, the
    soak, how many cutovers and completions were recorded, the journal."""
    slug, schema = world.tenant.slug, world.state.layout.schema
    with sqlite3.connect(f"file:{world.orders_db}?mode=ro", uri=True) as v1:
        on_v1 = sorted(row[0] for row in v1.execute("SELECT id FROM orders"))
    with psycopg.connect(world.stack.database.admin_url) as conn:
        on_v2 = sorted(row[0] for row in conn.execute(
            "SELECT o.order_id FROM payments.orders o JOIN payments.tenants t ON t.id = o.tenant_id "
            "WHERE t.slug = %s", (slug,)))
    with psycopg.connect(world.state.admin_url) as conn:
        phases = [row[0] for row in conn.execute(f"SELECT phase FROM {schema}.rollouts WHERE tenant = %s", (slug,))]
        cutovers = conn.execute(f"SELECT count(*) FROM {schema}.cutovers WHERE tenant = %s", (slug,)).fetchone()
        done_events = conn.execute(f"SELECT count(*) FROM {schema}.rollout_events WHERE tenant = %s AND kind = "
                                   "'cutover_done'", (slug,)).fetchone()
    # The router runs on this test's event loop: ask it from a thread.
    serves, _ = await asyncio.to_thread(router_serves, world.request("v2").router_admin_urls[0], slug)
    return {"file": world.router.config_path.read_text(), "router": serves,
            "v1 orders in v2": on_v2 == on_v1 != [], "rollouts": phases, "cutovers": cutovers,
            "cutover_done events": done_events, "journal": journal_of(world)}


def uninterrupted_end_state(file_before: str) -> dict[str, Any]:
    return {"file": file_before.replace("backend: v1   #", "backend: v2   #"), "router": "v2",
            "v1 orders in v2": True, "rollouts": ["soaking"], "cutovers": (1,), "cutover_done events": (1,),
            "journal": {"outcome": "done", **{step.value: "done" for step in TO_V2}}}


CASES = [*((step, "begin") for step in TO_V2), (Step.HOLD, "end"), (Step.FLIP, "end"), (Step.RELEASE, "end"),
         (Step.SOAK_STARTED, "end")]


@pytest.mark.parametrize(("step", "boundary"), CASES, ids=[f"{s.value}-{b}" for s, b in CASES])
async def test_ctrl_c_at_each_step_then_a_rerun_ends_as_an_uninterrupted_cutover(
        world: World, step: Step, boundary: Boundary) -> None:
    v1_holds_an_order(world)
    before = world.router.config_path.read_text()
    said: list[str] = []
    stopped = Cutover(world.request("v2"), say=said.append, on_step=interrupt_at(step, boundary))
    with pytest.raises(Interrupted, match=f"stopped during {step.label}; run the same command again"):
        await asyncio.to_thread(stopped.run)
    index = TO_V2.index(step)
    done = ", ".join(s.label for s in TO_V2[:index]) or "nothing"
    missing = ", ".join([f"{step.label} (interrupted)", *(s.label for s in TO_V2[index + 1:])])
    assert said[-2:] == [f"done: {done}", f"not done: {missing}"], said
    assert journal_of(world)["outcome"] == "interrupted" and journal_of(world)[step.value] == "interrupted"
    # Interrupted while the writes were held: released at once (to v1 before the flip), not left to expire.
    assert HoldStore(world.state.control_url, world.state.layout.schema).open_holds(world.tenant.slug) == []
    # Up to the flip nothing moved; from the flip on (its work done, or not yet recorded) the file says v2.
    assert ("backend: v2" in world.router.config_path.read_text()) == (
        index > TO_V2.index(Step.FLIP) or (step, boundary) == (Step.FLIP, "end"))

    said.clear()
    assert await asyncio.to_thread(Cutover(world.request("v2"), say=said.append).run) is True
    assert said[0].startswith("continuing cutover "), said
    expected = uninterrupted_end_state(before)
    if (step, boundary) == (Step.FLIP, "end"):  # the re-run found the file flipped: nothing to redo up to it
        expected["journal"][Step.FLIP.value] = "skipped"
    assert await end_state(world) == expected
    if index > TO_V2.index(Step.FLIP):
        assert not any(line.startswith(("preflight:", "final sync:", "flipped:")) for line in said), said
    assert any(line.startswith("routers: ") and "serves" in line for line in said), said  # confirmed again


async def test_an_uninterrupted_cutover_journals_every_step(world: World) -> None:
    v1_holds_an_order(world)
    before = world.router.config_path.read_text()
    assert await asyncio.to_thread(Cutover(world.request("v2"), say=lambda _: None).run) is True
    assert await end_state(world) == uninterrupted_end_state(before)


async def test_ctrl_c_on_the_way_back_then_a_rerun_ends_the_rollout(world: World) -> None:
    v1_holds_an_order(world)
    assert await asyncio.to_thread(Cutover(world.request("v2"), say=lambda _: None).run) is True
    said: list[str] = []
    back = Cutover(world.request("v1"), say=said.append, on_step=interrupt_at(Step.ROUTERS_CONFIRMED, "begin"))
    with pytest.raises(Interrupted):
        await asyncio.to_thread(back.run)
    assert said[-2:] == ["done: preflight, hold, final sync, flip, release",
                         "not done: routers confirmed (interrupted), rollout ended"]
    assert await asyncio.to_thread(Cutover(world.request("v1"), say=said.append).run) is True
    assert journal_of(world) == {"outcome": "done", **{step.value: "done" for step in steps_to("v1")}}
    state = await end_state(world)
    assert (state["router"], state["rollouts"]) == ("v1", ["rolled_back"])


def cli_command(world: World) -> list[str]:
    db, state = world.stack.database, world.state
    return ["cutover", world.tenant.slug, "--to", "v2", "--config", str(world.router.config_path),
            "--from", f"sqlite:{world.orders_db}", "--database-url", db.app_url, "--admin-url", db.admin_url,
            "--schema", "payments", "--owner-role", db.layout.owner_role, "--app-role", db.layout.app_role,
            "--state-database-url", state.control_url, "--state-schema", state.layout.schema,
            *(["--no-nginx"] if shutil.which("nginx") is None else [])]


async def stop_the_cli_while_it_waits_for_a_router(world: World, signal_number: int) -> tuple[int, str, str]:
    """Run the CLI with a router that stays down (the first run waits for it the whole
    router_wait_s), and send the signal once the journal says the wait began: wherever it lands
    from there, it is in that step. (returncode, stdout, stderr)"""
    text = world.router.config_path.read_text()
    world.router.config_path.write_text(text.replace("router_wait_s: 10", "router_wait_s: 600"))
    process = subprocess.Popen([sys.executable, "-m", "controlplane", *cli_command(world), "--router-admin-url",
                                "http://127.0.0.1:9"], cwd=REPO, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    store = CutoverStore(world.state.control_url, world.state.layout.schema)
    try:
        await wait_until(lambda: process.poll() is not None or (
            store.latest(world.tenant.slug) is not None
            and journal_of(world)[Step.ROUTERS_CONFIRMED.value] == "started"), timeout_s=50)
        process.send_signal(signal_number)
        out, err = await asyncio.to_thread(process.communicate, timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, out, err


async def the_same_command_finishes(world: World, capsys: pytest.CaptureFixture[str]) -> str:
    """The router is back (the run is given the one that answers): the same command finishes the move."""
    capsys.readouterr()
    up = ["--router-admin-url", world.request("v2").router_admin_urls[0]]
    assert await asyncio.to_thread(run, [*cli_command(world), *up]) == ExitStatus.OK
    out = capsys.readouterr().out
    assert out.startswith("continuing cutover "), out
    assert "flipped:" not in out and "soak: started" in out
    return out


async def test_sigint_while_waiting_for_a_router_exits_130_and_the_same_command_continues(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    v1_holds_an_order(world)
    slug, state = world.tenant.slug, world.state
    returncode, out, err = await stop_the_cli_while_it_waits_for_a_router(world, signal.SIGINT)
    before = world.router.config_path.read_text().replace("backend: v2   #", "backend: v1   #")
    assert returncode == ExitStatus.INTERRUPTED, (out, err)
    assert out.splitlines()[-2:] == ["done: preflight, bulk sync, hold, final sync, flip, reverse sync started, release",
                                     "not done: routers confirmed (interrupted), soak started"], out
    assert (f"dualstack: interrupted: the cutover of {slug} to v2 stopped during routers confirmed; run the same "
            "command again to continue from cutover ") in err, err
    assert "backend: v2" in world.router.config_path.read_text()

    status = ["cutover", "status", slug, "--state-database-url", state.control_url, "--state-schema",
              state.layout.schema]
    capsys.readouterr()
    assert run(status) == ExitStatus.OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("cutover ") and f" of {slug}: v1 -> v2, begun " in lines[0]
    assert ": interrupted at " in lines[0], lines
    assert [line.split()[:2] for line in lines[1:]] == [
        ["preflight", "done"], ["bulk", "sync"], ["hold", "done"], ["final", "sync"], ["flip", "done"],
        ["reverse", "sync"], ["release", "done"], ["routers", "confirmed"], ["soak", "started"]], lines
    assert " ".join(lines[6].split()).startswith("reverse sync started done") and " ".join(
        lines[8].split()).startswith("routers confirmed interrupted") and " ".join(
        lines[9].split()) == "soak started not started", lines
    assert "clean: True" in lines[2], lines

    await the_same_command_finishes(world, capsys)
    assert await end_state(world) == uninterrupted_end_state(before)

    assert run([*status, "--json"]) == ExitStatus.OK
    shown = json.loads(capsys.readouterr().out)
    assert (shown["tenant"], shown["from"], shown["to"], shown["outcome"]) == (slug, "v1", "v2", "done")
    assert [(s["step"], s["status"]) for s in shown["steps"]] == [(step.value, "done") for step in TO_V2]
    statuses = [(e["step"], e["status"]) for e in shown["journal"]]
    assert ("routers_confirmed", "interrupted") in statuses and statuses[-1] == ("soak_started", "done")
    assert run(["cutover", "status", "nosuch", "--state-database-url", state.control_url, "--state-schema",
                state.layout.schema]) == ExitStatus.INVALID
    assert "no cutover of nosuch is recorded" in capsys.readouterr().out


async def test_a_cutover_killed_mid_step_leaves_a_journal_saying_where_and_the_same_command_continues(
        world: World, capsys: pytest.CaptureFixture[str]) -> None:
    v1_holds_an_order(world)
    returncode, out, _ = await stop_the_cli_while_it_waits_for_a_router(world, signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    assert "not done:" not in out  # nothing had the chance to say it: the journal does
    before = world.router.config_path.read_text().replace("backend: v2   #", "backend: v1   #")
    capsys.readouterr()
    assert run(["cutover", "status", world.tenant.slug, "--state-database-url", world.state.control_url,
                "--state-schema", world.state.layout.schema]) == ExitStatus.OK
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].endswith(": no end recorded: still running, or its process died during routers confirmed"), shown
    assert " ".join(shown[8].split()).startswith("routers confirmed started"), shown
    out = await the_same_command_finishes(world, capsys)
    assert "(v1 -> v2, begun " in out.splitlines()[0] and "no end recorded) from its journal; done: preflight, " \
        "bulk sync, hold, final sync, flip, reverse sync started, release" in out.splitlines()[0], out
    assert await end_state(world) == uninterrupted_end_state(before)


async def test_a_cutover_the_other_way_supersedes_an_unfinished_one(world: World) -> None:
    v1_holds_an_order(world)
    said: list[str] = []
    with pytest.raises(Interrupted):
        await asyncio.to_thread(Cutover(world.request("v2"), say=said.append,
                                        on_step=interrupt_at(Step.ROUTERS_CONFIRMED, "begin")).run)
    first = CutoverStore(world.state.control_url, world.state.layout.schema).latest(world.tenant.slug)
    assert first is not None
    said.clear()
    assert await asyncio.to_thread(Cutover(world.request("v1"), say=said.append).run) is True
    assert said[0] == f"cutover {first.id} (v1 -> v2) did not finish; this cutover to v1 supersedes it", said
    assert journal_of(world) == {"outcome": "done", **{step.value: "done" for step in steps_to("v1")}}
    with psycopg.connect(world.state.admin_url) as conn:
        outcome = conn.execute(f"SELECT outcome FROM {world.state.layout.schema}.cutovers WHERE id = %s",
                               (first.id,)).fetchone()
    assert outcome == ("superseded",)


async def test_a_second_run_of_a_tenants_cutover_while_one_runs_changes_nothing(world: World) -> None:
    v1_holds_an_order(world)
    before = world.router.config_path.read_text()
    store = CutoverStore(world.state.control_url, world.state.layout.schema)
    with store.exclusive(world.tenant.slug) as first:  # what the running cutover holds, on its own connection
        assert first
        with pytest.raises(CutoverStopped, match=f"another cutover of {world.tenant.slug} is running"):
            await asyncio.to_thread(Cutover(world.request("v2"), say=lambda _: None).run)
        assert world.router.config_path.read_text() == before
        assert store.latest(world.tenant.slug) is None  # not even a journal was begun
    # Once the first ends (or its process dies: the lock is its connection's), a run goes ahead.
    assert await asyncio.to_thread(Cutover(world.request("v2"), say=lambda _: None).run) is True


def end_the_cutover_locks_backend(world: World) -> None:
    """What a restart of the state database does to a running cutover: the backend holding its lock ends."""
    with psycopg.connect(world.state.admin_url, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s AND objid::bigint = (hashtext(%s)::bigint & 4294967295) "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (0x6375746F, world.tenant.slug)).fetchall()
    assert ended == [(True,)], ended


@pytest.mark.parametrize("interrupted", [True, False], ids=["ctrl-c", "clean"])
async def test_the_cutover_lock_lost_mid_run_does_not_replace_how_the_run_ends(
        world: World, interrupted: bool) -> None:
    """The lock's unlock fails on a dead connection: Ctrl-C still ends the run as interrupted (exit 130),
    and a run that went on ends clean."""
    v1_holds_an_order(world)

    def hook(at: Step, where: Boundary) -> None:
        if (at, where) == (Step.HOLD, "begin"):
            end_the_cutover_locks_backend(world)
            if interrupted:
                raise KeyboardInterrupt

    run_ = Cutover(world.request("v2"), say=lambda _: None, on_step=hook).run
    if interrupted:
        with pytest.raises(Interrupted, match="stopped during hold; run the same command again"):
            await asyncio.to_thread(run_)
        assert journal_of(world)["outcome"] == "interrupted"
    else:
        assert await asyncio.to_thread(run_) is True
        assert journal_of(world)["outcome"] == "done"

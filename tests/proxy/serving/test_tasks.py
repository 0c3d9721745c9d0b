"""Owned background work (proxy/serving/tasks.py) with real asyncio tasks: a pool bounds what runs and
counts what it refuses, and closing it ends its tasks, even one that swallows a cancellation (as
asyncio.wait_for can on Python 3.11, which once held an app's cleanup for ever), and leaves one that
never ends behind, named in the log, instead of hanging."""

from __future__ import annotations

import asyncio
import inspect
import logging

import pytest

from proxy.serving import tasks
from proxy.serving.tasks import TaskPool


async def test_a_full_or_closed_pool_refuses_counts_and_closes_the_coroutine() -> None:
    drops: list[str] = []
    pool = TaskPool("bounded", limit=2, on_drop=drops.append)
    gate = asyncio.Event()
    assert pool.spawn(gate.wait(), name="a") and pool.spawn(gate.wait(), name="b")
    refused = gate.wait()
    assert not pool.spawn(refused, name="c")
    assert inspect.getcoroutinestate(refused) == inspect.CORO_CLOSED  # never left un-awaited
    assert (drops, len(pool)) == (["full"], 2)
    gate.set()
    await pool.close()
    assert len(pool) == 0
    late = gate.wait()
    assert not pool.spawn(late, name="late")
    assert inspect.getcoroutinestate(late) == inspect.CORO_CLOSED
    assert drops == ["full", "closed"]


async def test_a_failed_task_is_logged_by_name(caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    pool = TaskPool("logged", limit=1)
    with caplog.at_level(logging.ERROR, logger="proxy.serving.tasks"):
        pool.spawn(fails(), name="job")
        await pool.close()
    assert len(pool) == 0
    assert [r.getMessage() for r in caplog.records] == ["background task logged:job failed"]


async def test_close_lets_tasks_finish_within_its_timeout_and_cancels_the_rest() -> None:
    finished: list[str] = []
    cancelled: list[str] = []
    running = asyncio.Event()

    async def quick() -> None:
        await asyncio.sleep(0)
        finished.append("quick")

    async def endless() -> None:
        running.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append("endless")
            raise

    pool = TaskPool("closing", limit=2)
    pool.spawn(quick(), name="quick")
    pool.spawn(endless(), name="endless")
    await running.wait()
    await pool.close(timeout_s=0.05)
    assert (finished, cancelled, len(pool)) == (["quick"], ["endless"], 0)


async def test_close_cancels_again_a_task_that_swallowed_a_cancellation() -> None:
    """The fix of cbf7a03: one cancel() was followed by an unbounded wait, so a task that swallowed
    it (a loop around asyncio.wait_for on 3.11) held close() for ever."""
    swallowed = 0
    ended = asyncio.Event()
    running = asyncio.Event()

    async def swallows_two() -> None:
        nonlocal swallowed
        running.set()
        try:
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    if swallowed == 2:
                        raise
                    swallowed += 1  # what wait_for does when the cancellation meets its inner result
        finally:
            ended.set()

    pool = TaskPool("stubborn", limit=1)
    pool.spawn(swallows_two(), name="loop")
    await running.wait()
    await pool.close(timeout_s=0)
    assert swallowed == 2 and ended.is_set() and len(pool) == 0


async def test_close_is_bounded_when_a_task_never_ends_and_names_it(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shorter rounds than production's, so the test does not sit through seconds of them; the number
    # of rounds, and so the bound, is the module's own.
    monkeypatch.setattr(tasks, "CANCEL_WAIT_S", 0.01)
    release = asyncio.Event()
    cancels = 0
    running = asyncio.Event()

    async def deaf() -> None:
        nonlocal cancels
        running.set()
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                cancels += 1

    pool = TaskPool("deaf", limit=1)
    pool.spawn(deaf(), name="worker")
    await running.wait()
    with caplog.at_level(logging.ERROR, logger="proxy.serving.tasks"):
        await pool.close(timeout_s=0)  # returns although the task is still running
    assert len(pool) == 1 and cancels == tasks.CANCEL_ATTEMPTS
    assert [r.getMessage() for r in caplog.records] == [
        "deaf: 1 task(s) ignored cancellation and are left behind: deaf:worker"]
    [left] = [t for t in asyncio.all_tasks() if t.get_name() == "deaf:worker"]
    release.set()
    await left
    assert len(pool) == 0

"""The write hold of a cutover on the real stack: every worker of every router (the test's router and a
real router process with two workers) must confirm it; one that does not (a worker stopped with
SIGSTOP after it registered) aborts the cutover with nothing flipped and the held writes sent to the
old backend; a final sync slower than the hold aborts it too; Ctrl-C releases it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiohttp
import psycopg
import pytest

from controlplane.cutover import Cutover, CutoverStopped
from controlplane.cutover.journal import Boundary, Step
from controlplane.errors import Interrupted
from controlplane.state.holds import HoldStore
from tests.conftest import REPO, free_port, wait_until
from tests.fixtures.cutover_world import World, v1_holds_an_order


@dataclass
class Creates:
    """Payment creations through the test's router, one after the other, until stopped."""

    world: World
    answered_by: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=itertools.count)

    async def run(self, stop: asyncio.Event) -> None:
        headers = {"Host": f"{self.world.tenant.slug}.agentbar.ai"}
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                body = {"orderId": f"HO{next(self.ids):05d}", "amount": 150000, "email": "budi@example.com",
                        "phone": "0812", "name": "Budi", "paymentMethod": "bca"}
                async with session.post(f"{self.world.router.url}/payment/create", json=body,
                                        headers=headers) as response:
                    text = await response.text()
                    if response.status != 200 or json.loads(text).get("success") is not True:
                        self.failures.append(f"{response.status} {text[:120]}")
                    self.answered_by[response.headers.get("X-Dualstack-Backend", "")] += 1
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def creating(world: World) -> AsyncIterator[Creates]:
    creates, stop = Creates(world), asyncio.Event()
    task = asyncio.create_task(creates.run(stop))
    try:
        yield creates
    finally:
        stop.set()
        await task


def worker_pids(world: World) -> list[int]:
    """The router workers registered lately other than the test's own router (in this process)."""
    with psycopg.connect(world.state.admin_url) as conn:
        return [r[0] for r in conn.execute(f"SELECT pid FROM {world.state.layout.schema}.router_workers "
                                           "WHERE pid <> %s AND last_seen > now() - interval '10 seconds'",
                                           (os.getpid(),))]


@pytest.fixture
async def second_router(world: World) -> AsyncIterator[subprocess.Popen[str]]:
    """A real router process with two workers, on the same routing file and state database."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy.router", "--config", str(world.router.config_path), "--listen",
         f"127.0.0.1:{free_port()}", "--admin-listen", f"127.0.0.1:{free_port()}", "--workers", "2",
         "--state-database-url", world.state.router_url], cwd=REPO, text=True, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        await wait_until(lambda: len(worker_pids(world)) == 2 or process.poll() is not None,
                         timeout_s=30)
        assert process.poll() is None
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGCONT)  # a stopped worker drains too
        process.terminate()  # the supervisor stops its workers
        try:
            await asyncio.to_thread(process.wait, timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        with psycopg.connect(world.state.admin_url) as conn:  # a worker killed mid-way leaves its row
            conn.execute(f"DELETE FROM {world.state.layout.schema}.router_workers WHERE pid <> %s", (os.getpid(),))


def set_hold_s(world: World, hold_s: float) -> None:
    """The world's routers may hold writes 10 s (a busy test machine must not abort a cutover); these
    tests are about the bound itself."""
    text = world.router.config_path.read_text()
    world.router.config_path.write_text(text.replace("hold_s: 10}", f"hold_s: {hold_s:g}}}"))


async def test_every_worker_must_confirm_and_one_stopped_aborts_the_cutover_with_its_writes_on_v1(
        world: World, second_router: subprocess.Popen[str]) -> None:
    v1_holds_an_order(world)
    set_hold_s(world, 3)
    stopped = worker_pids(world)[0]
    os.kill(stopped, signal.SIGSTOP)  # registered a moment ago: alive, but it will confirm nothing
    before = world.router.config_path.read_text()
    said: list[str] = []
    async with creating(world) as creates:
        await wait_until(lambda: sum(creates.answered_by.values()) > 0, timeout_s=10)
        with pytest.raises(CutoverStopped, match=rf"hold: 1 router worker\(s\) did not confirm the hold of "
                           rf"{world.tenant.slug}'s writes within 3 s \(cutover.hold_s\): worker {stopped} on "):
            await asyncio.to_thread(Cutover(world.request("v2"), say=said.append).run)
        # The creation that arrived while the hold waited for the stopped worker went on to v1.
        await wait_until(lambda: world.router.sample("dualstack_held_requests_total", tenant=world.tenant.slug,
                                                     outcome="released") >= 1, timeout_s=10)
        await wait_until(lambda: sum(creates.answered_by.values()) > 3, timeout_s=10)
    assert world.router.config_path.read_text() == before  # nothing flipped
    assert creates.failures == [] and set(creates.answered_by) == {"v1"}, creates
    assert HoldStore(world.state.control_url, world.state.layout.schema).open_holds(world.tenant.slug) == []

    os.kill(stopped, signal.SIGCONT)
    said.clear()
    assert await asyncio.to_thread(Cutover(world.request("v2"), say=said.append).run) is True
    assert any(line.startswith("hold: every router worker (3) holds ") for line in said), said
    assert "backend: v2" in world.router.config_path.read_text()


async def test_a_final_sync_slower_than_the_hold_aborts_before_the_flip(world: World) -> None:
    v1_holds_an_order(world)
    set_hold_s(world, 2)
    before = world.router.config_path.read_text()

    def slow_final_sync(step: Step, boundary: Boundary) -> None:
        if (step, boundary) == (Step.FINAL_SYNC, "end"):
            time.sleep(2)  # as a final sync with too much to do would

    async with creating(world) as creates:
        await wait_until(lambda: sum(creates.answered_by.values()) > 0, timeout_s=10)
        with pytest.raises(CutoverStopped, match=r"hold: the final sync ended \d\.\d+ s into the 2 s hold "
                           r"\(cutover.hold_s\), too late to flip within it. Nothing was flipped; the held writes "
                           r"went on to v1"):
            await asyncio.to_thread(Cutover(world.request("v2"), say=lambda _: None,
                                            on_step=slow_final_sync).run)
        await wait_until(lambda: sum(creates.answered_by.values()) > 3, timeout_s=10)
    assert world.router.config_path.read_text() == before
    assert creates.failures == [] and set(creates.answered_by) == {"v1"}, creates
    # Released by the cutover, or ended on the router's own clock first (its bound is the same 2 s).
    assert world.router.sample("dualstack_write_holds_total", tenant=world.tenant.slug) == 1
    assert HoldStore(world.state.control_url, world.state.layout.schema).open_holds(world.tenant.slug) == []


async def test_ctrl_c_while_writes_are_held_releases_them(world: World) -> None:
    v1_holds_an_order(world)
    set_hold_s(world, 20)  # only a release ends it this soon

    def interrupt(step: Step, boundary: Boundary) -> None:
        if (step, boundary) == (Step.FINAL_SYNC, "begin"):
            raise KeyboardInterrupt

    async with creating(world) as creates:
        await wait_until(lambda: sum(creates.answered_by.values()) > 0, timeout_s=10)
        with pytest.raises(Interrupted, match="stopped during final sync"):
            await asyncio.to_thread(Cutover(world.request("v2"), say=lambda _: None, on_step=interrupt).run)
        await wait_until(lambda: world.router.sample("dualstack_write_holds_total", tenant=world.tenant.slug,
                                                     outcome="released") == 1, timeout_s=10)
        await wait_until(lambda: sum(creates.answered_by.values()) > 3, timeout_s=10)
    assert creates.failures == [] and set(creates.answered_by) == {"v1"}, creates
    assert world.router.sample("dualstack_write_holds_total", tenant=world.tenant.slug, outcome="expired") == 0


async def test_a_worker_registered_lately_but_not_alive_now_stops_the_cutover_unless_overridden(world: World) -> None:
    """A worker cut off from the state database for more than a few polls drops out of those that must
    confirm; it may still forward writes, so the cutover refuses to move while it is missing."""
    v1_holds_an_order(world)
    schema = world.state.layout.schema
    with psycopg.connect(world.state.admin_url, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {schema}.router_workers (worker, host, pid, poll_s, secret_sha256, last_seen) "
                     "VALUES ('far-host:4242:0badcafe', 'far-host', 4242, 2, sha256('s'), now() - interval '1 minute')")
    try:
        before = world.router.config_path.read_text()
        said: list[str] = []
        with pytest.raises(CutoverStopped, match=r"preflight failed \(hold\)"):
            await asyncio.to_thread(Cutover(world.request("v2"), say=said.append).run)
        assert world.router.config_path.read_text() == before
        refusal = "\n".join(said)
        assert ("1 router worker(s) registered within the last 10 minutes are not alive now: worker 4242 on "
                "far-host (far-host:4242:0badcafe, last seen ") in refusal, refusal
        assert "--override hold --reason TEXT" in refusal

        request = world.request("v2", overrides=["hold"], reason="far-host was powered off")
        assert await asyncio.to_thread(Cutover(request, say=said.append).run) is True
        assert "backend: v2" in world.router.config_path.read_text()
    finally:
        with psycopg.connect(world.state.admin_url, autocommit=True) as conn:
            conn.execute(f"DELETE FROM {schema}.router_workers WHERE worker = 'far-host:4242:0badcafe'")

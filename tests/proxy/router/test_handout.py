"""A router's supervisor parses the routing file once and hands every worker the snapshot: real
router processes (2 workers) on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from prometheus_client import CollectorRegistry

from controlplane.config import ConfigFile
from controlplane.state.holds import HoldStore
from proxy.router.handout import NOTICE, RoutingPublisher, load_published
from proxy.router.metrics import ProxyMetrics
from proxy.router.state import RouterState
from tests.conftest import Database, Upstream, routing_yaml
from tests.proxy.router.conftest import RouterProcess, Starter

TENANTS = "buatfilm: {backend: v1}\ndemo: {backend: v2}\n"


def save(path: Path, text: str) -> None:
    """Save like an editor: write a new file and rename it over the old one."""
    tmp = path.with_name(path.name + ".swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def ten_thousand(v1: str, v2: str, first_on: str) -> str:
    """10,000 tenants (about 240 KB): the first on `first_on` (v1 holds it), the rest on v2."""
    tenants = f"t00000: {{backend: {first_on}}}\n" + "".join(f"t{i:05d}: {{backend: v2}}\n" for i in range(1, 10_000))
    return routing_yaml(v1, v2, tenants, v1_tenants=["t00000"])


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> None:
    """Poll an async condition (never a timing assertion: the bound only stops a broken test hanging)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


async def per_worker(router: RouterProcess, workers: int = 2, timeout_s: float = 15.0) -> dict[int, dict[str, Any]]:
    """Each worker's /routes, by worker pid: a new connection per request, until every worker answered."""
    views: dict[int, dict[str, Any]] = {}
    connector = aiohttp.TCPConnector(force_close=True)
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with aiohttp.ClientSession(connector=connector) as session:
        while len(views) < workers:
            assert asyncio.get_running_loop().time() < deadline, f"only workers {sorted(views)} answered"
            async with session.get(f"{router.admin_url}/routes") as response:
                view = await response.json()
            views[view["snapshot"]["worker_pid"]] = view
    return views


async def backends(router: RouterProcess, tenant: str, requests: int = 20) -> set[str]:
    """The backends that answered `requests` requests for `tenant`, each on a new connection (so both
    workers take some)."""
    connector = aiohttp.TCPConnector(force_close=True)
    seen = set()
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(requests):
            async with session.get(f"{router.url}/x", headers={"Host": f"{tenant}.agentbar.ai"}) as response:
                assert response.status == 200
                seen.add((await response.json())["backend"])
    return seen


async def test_two_workers_answer_on_ten_thousand_tenants_and_take_a_flip_parsed_once(
    upstreams: dict[str, Upstream], start_router: Starter, tmp_path: Path
) -> None:
    v1, v2 = upstreams["v1"].url, upstreams["v2"].url
    router = await start_router(ten_thousand(v1, v2, "v1"), workers=2)
    assert await backends(router, "t00000") == {"v1"}
    assert await backends(router, "t09999") == {"v2"}
    supervisor = router.process.pid
    for pid, view in (await per_worker(router)).items():
        # The supervisor parsed the file; the worker took its snapshot without parsing.
        assert view["snapshot"]["parsed_by_pid"] == supervisor != pid
        assert view["generation"] == 1 and len(view["tenants"]) == 10_000

    save(tmp_path / "routing.yaml", ten_thousand(v1, v2, "v2"))

    async def every_worker_flipped() -> bool:
        views = await per_worker(router)
        return all(view["generation"] == 2 and view["tenants"]["t00000"]["backend"] == "v2" for view in views.values())

    await eventually(every_worker_flipped)
    assert await backends(router, "t00000") == {"v2"}
    for pid, view in (await per_worker(router)).items():
        assert view["snapshot"]["parsed_by_pid"] == supervisor != pid


async def test_an_invalid_file_keeps_the_last_good_snapshot_in_every_worker_and_a_new_one(
    upstreams: dict[str, Upstream], start_router: Starter, tmp_path: Path
) -> None:
    v1, v2 = upstreams["v1"].url, upstreams["v2"].url
    router = await start_router(routing_yaml(v1, v2, TENANTS), workers=2)
    config = tmp_path / "routing.yaml"
    broken = TENANTS.replace("buatfilm: {backend: v1}", "buatfilm: {backend: v2")  # no closing brace
    save(config, routing_yaml(v1, v2, broken, v1_tenants=["buatfilm"]))

    async def every_worker_rejected() -> bool:
        return all(not view["last_reload"]["ok"] for view in (await per_worker(router)).values())

    await eventually(every_worker_rejected)
    for view in (await per_worker(router)).values():
        assert view["generation"] == 1 and view["tenants"]["buatfilm"]["backend"] == "v1"
        assert any("invalid YAML" in issue for issue in view["last_reload"]["issues"])
    assert await backends(router, "buatfilm") == {"v1"}
    assert await router.sample("dualstack_config_last_reload_success") == 0

    # A worker started after the rejection (one was killed) starts from the supervisor's latest: the
    # last good snapshot, the rejection reported.
    killed = int(next(iter(await per_worker(router))))
    os.kill(killed, signal.SIGKILL)

    async def replaced() -> bool:
        pids = subprocess.run(["pgrep", "-P", str(router.process.pid)], capture_output=True, text=True,
                              check=False).stdout.split()
        return len(pids) == 2 and str(killed) not in pids

    await eventually(replaced)
    views = await per_worker(router)
    assert killed not in views
    for view in views.values():
        assert view["generation"] == 1 and view["tenants"]["buatfilm"]["backend"] == "v1"
        assert not view["last_reload"]["ok"]

    save(config, routing_yaml(v1, v2, TENANTS.replace("buatfilm: {backend: v1}", "buatfilm: {backend: v2}")))

    async def every_worker_flipped() -> bool:
        views = await per_worker(router)
        return all(view["generation"] == 2 and view["last_reload"]["ok"] for view in views.values())

    await eventually(every_worker_flipped)
    assert await backends(router, "buatfilm") == {"v2"}


async def test_sighup_to_a_worker_is_not_a_reload(upstreams: dict[str, Upstream], start_router: Starter) -> None:
    """Only the supervisor reads the file: a worker sent SIGHUP says where to send it, and lives on."""
    router = await start_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS), workers=2)
    worker = next(iter(await per_worker(router)))
    os.kill(worker, signal.SIGHUP)
    router.process.send_signal(signal.SIGHUP)

    async def every_worker_reloaded() -> bool:
        return all(view["generation"] == 2 for view in (await per_worker(router)).values())

    await eventually(every_worker_reloaded)
    assert worker in await per_worker(router)
    router.process.terminate()
    output = await asyncio.to_thread(router.process.communicate, timeout=20)
    assert f"kill -HUP {router.process.pid}" in output[0]


def test_a_worker_that_never_reads_never_blocks_the_supervisor(tmp_path: Path) -> None:
    """Notices are written without blocking: a stuck worker misses some, and the next it reads is whole."""
    config = tmp_path / "routing.yaml"
    save(config, routing_yaml("http://127.0.0.1:1", "http://127.0.0.1:2", TENANTS))
    publisher = RoutingPublisher(ConfigFile(config, settle_s=0))
    try:
        stuck = publisher.attach()
        for _ in range(6000):  # more notices than a pipe holds (64 KiB / 16 bytes)
            publisher.poll(forced=False)
        save(config, routing_yaml("http://127.0.0.1:1", "http://127.0.0.1:2", TENANTS.replace("v1", "v2", 1)))
        publisher.poll(forced=False)
        assert publisher.latest.generation == 2 and publisher.latest.parsed_by_pid == os.getpid()
        received = b""
        os.set_blocking(stuck.notices_fd, False)
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(stuck.notices_fd, 65536):
                received += chunk
        assert received and len(received) % NOTICE.size == 0
        # The file holds the latest outcome, whatever notices were missed.
        assert load_published(stuck.outcome_path).config.tenants["buatfilm"].backend == "v2"
        publisher.detach(stuck)
    finally:
        publisher.close()
    assert not publisher.folder.exists()


def test_a_change_the_supervisor_could_not_hand_on_is_handed_at_a_later_poll(tmp_path: Path) -> None:
    """A failed hand-out (a full disk, the folder cleaned away) is tried again at every poll, not only at
    the file's next edit: a rollback written by hand must not look applied while the workers lack it."""
    config = tmp_path / "routing.yaml"
    save(config, routing_yaml("http://127.0.0.1:1", "http://127.0.0.1:2", TENANTS))
    publisher = RoutingPublisher(ConfigFile(config, settle_s=0))
    try:
        worker = publisher.attach()
        publisher.outcome_path.unlink()
        publisher.outcome_path.mkdir()  # the outcome cannot be replaced now
        save(config, routing_yaml("http://127.0.0.1:1", "http://127.0.0.1:2", TENANTS.replace("v1", "v2", 1)))
        publisher.poll(forced=False)
        assert publisher.latest.generation == 1  # not handed: the workers keep what they have
        publisher.outcome_path.rmdir()
        publisher.poll(forced=False)  # the file is unchanged since; the hand-out is tried again anyway
        assert publisher.latest.generation == 2
        assert load_published(worker.outcome_path).config.tenants["buatfilm"].backend == "v2"
        shutil.rmtree(publisher.folder)  # a /tmp cleaner
        save(config, routing_yaml("http://127.0.0.1:1", "http://127.0.0.1:2", TENANTS))
        publisher.poll(forced=False)
        assert load_published(worker.outcome_path).config.tenants["buatfilm"].backend == "v1"
        publisher.detach(worker)
    finally:
        publisher.close()


def test_a_broken_file_stops_the_supervisor_before_any_worker_starts(tmp_path: Path,
                                                                    free_port: Callable[[], int]) -> None:
    config = tmp_path / "routing.yaml"
    config.write_text("tenants: {")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run(
        [sys.executable, "-m", "proxy.router", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}",
         "--admin-listen", f"127.0.0.1:{free_port()}", "--workers", "2"],
        capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert f"{config}:1: (document): invalid YAML" in result.stderr
    assert f"dualstack validate {config}" in result.stderr
    assert "worker" not in result.stderr  # none was started


async def test_a_worker_takes_the_supervisors_next_snapshot_after_a_reload_of_its_own(
        upstreams: dict[str, Upstream], tmp_path: Path) -> None:
    """Snapshots are taken by the supervisor's numbering: a table the worker loaded itself (its own
    generation moved on) does not make it ignore the next one."""
    path = tmp_path / "routing.yaml"
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS)
    path.write_text(yaml)
    publisher = RoutingPublisher(ConfigFile(path))
    try:
        state = RouterState(ConfigFile(path), ProxyMetrics(CollectorRegistry()), published=publisher.latest)
        await state.reload(force=True)
        assert state.table.generation == 2
        save(path, yaml.replace("buatfilm: {backend: v1}", "buatfilm: {backend: v2}"))
        publisher.poll(forced=False)
        state.take(load_published(publisher.outcome_path), None)
        route = state.table.route_for("buatfilm")
        assert route is not None and route.backend == "v2"
        assert state.table.generation == publisher.latest.generation == 2
    finally:
        publisher.close()


def router_workers(state: Database, pids: set[int]) -> list[int]:
    with psycopg.connect(state.admin_url) as conn:
        return [r[0] for r in conn.execute(f"SELECT pid FROM {state.layout.schema}.router_workers "
                                           "WHERE pid = ANY(%s)", (list(pids),))]


async def test_workers_that_ended_a_hold_still_follow_the_supervisor_and_unregister_when_stopped(
        upstreams: dict[str, Upstream], start_router: Starter, state: Database, tmp_path: Path) -> None:
    """Each worker ends a hold nobody released on its own clock: it asks the supervisor for a fresh
    snapshot rather than reading the file itself, so the flip that follows reaches it."""
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS)
    router = await start_router(yaml, workers=2, args=["--state-database-url", state.router_url])
    workers = set(await per_worker(router))
    store = HoldStore(state.control_url, state.layout.schema)
    await eventually(lambda: asyncio.to_thread(lambda: len(router_workers(state, workers)) == 2))
    hold = await asyncio.to_thread(store.create, "buatfilm", 1.0, None)

    async def every_worker_ended_it() -> bool:  # summed over the workers
        return await router.sample(r'dualstack_write_holds_total\{outcome="expired",tenant="buatfilm"\}') == 2

    with psycopg.connect(state.admin_url) as conn:  # both confirmed it
        await eventually(lambda: asyncio.to_thread(lambda: conn.execute(
            f"SELECT count(*) FROM {state.layout.schema}.hold_confirmations WHERE hold_id = %s",
            (hold.id,)).fetchone() == (2,)))
    await eventually(every_worker_ended_it)
    save(tmp_path / "routing.yaml", yaml.replace("buatfilm: {backend: v1}", "buatfilm: {backend: v2}"))

    async def every_worker_flipped() -> bool:
        return all(view["tenants"]["buatfilm"]["backend"] == "v2" for view in (await per_worker(router)).values())

    await eventually(every_worker_flipped)
    assert await backends(router, "buatfilm") == {"v2"}
    router.process.terminate()  # a clean stop: every worker unregisters
    await asyncio.to_thread(router.process.communicate, timeout=20)
    assert router_workers(state, workers) == []

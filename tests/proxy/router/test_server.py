"""The router as a real process: workers sharing a port, signals, draining, IPv6."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from controlplane.errors import ExitStatus
from tests.conftest import Upstream, routing_yaml, wait_until
from tests.proxy.router.conftest import RouterProcess, Starter

TENANTS = "buatfilm: {backend: v1}\ndemo: {backend: v2}\n"


async def test_two_workers_share_the_port_and_report_correct_totals(
    upstreams: dict[str, Upstream], start_router: Starter
) -> None:
    router = await start_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS), workers=2)
    # A new connection per request, so the kernel spreads them over both workers.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def one(tenant: str) -> None:
            async with session.get(f"{router.url}/x", headers={"Host": f"{tenant}.agentbar.ai"}) as response:
                assert response.status == 200

        await asyncio.gather(*(one("buatfilm") for _ in range(150)), *(one("demo") for _ in range(50)))
    served_by = {seen.headers["X-Forwarded-For"] for seen in upstreams["v1"].seen}
    assert served_by == {"127.0.0.1"}
    text = await router.metrics()
    # Whichever worker answers the scrape, the totals are the sum over both workers.
    for _ in range(4):
        assert await router.sample(
            r'dualstack_requests_total\{backend="v1",code_class="2xx",route="read",tenant="buatfilm"\}') == 150
        assert await router.sample(
            r'dualstack_request_duration_seconds_count\{backend="v2",route="read",tenant="_other"\}') == 50
    assert await router.sample(r'dualstack_tenants\{backend="v1"\}') == 1
    worker_pids = subprocess.run(["pgrep", "-P", str(router.process.pid)], capture_output=True, text=True,
                                 check=False).stdout.split()
    assert len(worker_pids) >= 2
    if shutil.which("promtool"):
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                               check=False)
        assert check.returncode == 0, check.stdout + check.stderr


async def test_sighup_reloads_every_worker(upstreams: dict[str, Upstream], start_router: Starter) -> None:
    router = await start_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS), workers=2)
    router.process.send_signal(signal.SIGHUP)  # the file did not change: only the signal reloads it
    for _ in range(100):
        if await router.sample("dualstack_config_generation") == 2:
            break
        await asyncio.sleep(0.05)
    assert await router.sample("dualstack_config_generation") == 2


async def test_sigterm_drains_in_flight_requests(aiohttp_server: Any, start_router: Starter) -> None:
    in_flight = asyncio.Event()
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        in_flight.set()
        await release.wait()
        return web.json_response({"done": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", slow)
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    router = await start_router(routing_yaml(url, url, TENANTS))
    async with aiohttp.ClientSession() as session:
        request = asyncio.ensure_future(session.get(f"{router.url}/slow", headers={"Host": "demo.agentbar.ai"}))
        await asyncio.wait_for(in_flight.wait(), timeout=10)
        router.process.send_signal(signal.SIGTERM)
        # The listener closes (new connections are refused) while the in-flight request continues.
        port = int(router.url.rsplit(":", 1)[1])
        for _ in range(200):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except (ConnectionRefusedError, ConnectionResetError):
                break  # refused, or reset from the backlog of a listener that just closed
            writer.close()
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the router kept accepting connections after SIGTERM")
        assert router.process.poll() is None  # still draining: the request is in flight
        release.set()
        response = await asyncio.wait_for(request, timeout=10)
        assert response.status == 200 and await response.json() == {"done": True}
    output = await asyncio.to_thread(router.process.communicate, timeout=15)
    assert router.process.returncode == 0
    assert "draining" in output[0]


@pytest.mark.skipif(not os.path.exists("/proc/net/if_inet6"), reason="no IPv6 on this machine")
async def test_ipv6_listen_address(upstreams: dict[str, Upstream], start_router: Starter) -> None:
    router = await start_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS), host="::1")
    async with aiohttp.ClientSession() as session, session.get(
        f"{router.url}/x", headers={"Host": "demo.agentbar.ai", "X-Tenant-Slug": "buatfilm"}
    ) as response:
        assert response.status == 200
        # ::1 is a trusted proxy by default, so its X-Tenant-Slug is honoured
        assert (await response.json())["backend"] == "v1"
    assert upstreams["v1"].seen[-1].headers["X-Forwarded-For"] == "::1"


async def test_upstream_url_change_moves_traffic_to_the_new_pool(
    upstreams: dict[str, Upstream], start_router: Starter, tmp_path: Path
) -> None:
    v1, v2 = upstreams["v1"].url, upstreams["v2"].url
    router = await start_router(routing_yaml(v1, v2, TENANTS))
    (tmp_path / "routing.yaml").write_text(routing_yaml(v2, v2, TENANTS))
    async with aiohttp.ClientSession() as session:
        async def backend() -> str:
            async with session.get(f"{router.url}/x", headers={"Host": "buatfilm.agentbar.ai"}) as response:
                return str((await response.json())["backend"])

        for _ in range(100):
            if await backend() == "v2":
                break
            await asyncio.sleep(0.05)
        assert await backend() == "v2"  # the v1 upstream now points at the second server


async def test_workers_exit_when_their_supervisor_is_killed(
    upstreams: dict[str, Upstream], start_router: Starter
) -> None:
    router = await start_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS), workers=2)
    workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(router.process.pid)], capture_output=True,
                                              text=True, check=False).stdout.split()]
    assert workers
    router.process.kill()
    router.process.wait()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        status = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
        return status != "Z"

    try:
        await wait_until(lambda: not any(alive(pid) for pid in workers), timeout_s=15)
    except AssertionError:
        still = [Path(f"/proc/{pid}/cmdline").read_text() for pid in workers if alive(pid)]
        raise AssertionError(f"still running: {still}") from None


def handles_sighup(pid: int) -> bool:
    """Whether the process ignores or catches SIGHUP (its bit in /proc's signal masks)."""
    masks = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        masks[name] = value.strip()
    bit = 1 << (signal.SIGHUP - 1)
    return bool((int(masks["SigIgn"], 16) | int(masks["SigCgt"], 16)) & bit)


async def test_sighup_while_workers_start_kills_none(free_port: Callable[[], int], upstreams: dict[str, Upstream], tmp_path: Path) -> None:
    config = tmp_path / "routing.yaml"
    config.write_text(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS))
    admin_port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy.router", "--config", str(config), "--listen", f"127.0.0.1:{free_port()}",
         "--admin-listen", f"127.0.0.1:{admin_port}", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        # The interpreter cannot ignore a signal before it runs: wait until the supervisor does.
        await wait_until(lambda: handles_sighup(process.pid), timeout_s=10)
        for _ in range(30):  # `systemctl reload` arriving while workers are still importing
            await asyncio.sleep(0.03)
            process.send_signal(signal.SIGHUP)
        router = RouterProcess(process, 0, admin_port, "127.0.0.1")
        for _ in range(200):
            try:
                if await router.sample("dualstack_config_generation") >= 2:
                    break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        process.terminate()
        output = await asyncio.to_thread(process.communicate, timeout=20)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert "starting another" not in output[0], output[0]  # no worker died and had to be replaced
    assert process.returncode == 0, output[0]


def test_a_port_another_process_holds_exits_3_as_the_readme_says(free_port: Callable[[], int], tmp_path: Path) -> None:
    config = tmp_path / "routing.yaml"
    config.write_text(routing_yaml("http://127.0.0.1:1", "http://127.0.0.1:2", TENANTS))
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        result = subprocess.run(
            [sys.executable, "-m", "proxy.router", "--config", str(config), "--listen",
             f"127.0.0.1:{holder.getsockname()[1]}", "--admin-listen", f"127.0.0.1:{free_port()}"],
            capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == ExitStatus.ENVIRONMENT == 3, result.stderr
    assert "cannot listen" in result.stderr


async def test_a_restarted_workers_counters_are_folded_and_still_count(
    free_port: Callable[[], int], upstreams: dict[str, Upstream], tmp_path: Path
) -> None:
    config, metrics_dir = tmp_path / "routing.yaml", tmp_path / "metrics"
    config.write_text(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS))
    metrics_dir.mkdir()
    port, admin_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy.router", "--config", str(config), "--listen", f"127.0.0.1:{port}",
         "--admin-listen", f"127.0.0.1:{admin_port}", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    router = RouterProcess(process, port, admin_port, "127.0.0.1")
    total = r'dualstack_requests_total\{backend="v1",code_class="2xx",route="read",tenant="buatfilm"\}'

    def workers() -> list[int]:
        return [int(p) for p in subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True,
                                                check=False).stdout.split()]

    try:
        connector = aiohttp.TCPConnector(force_close=True)  # a new connection each: both workers count some
        async with aiohttp.ClientSession(connector=connector) as session:
            async def answered() -> bool:
                try:
                    async with session.get(f"{router.url}/x", headers={"Host": "buatfilm.agentbar.ai"}) as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            while not await answered():
                assert process.poll() is None
                await asyncio.sleep(0.05)
            for _ in range(39):
                assert await answered()
        await wait_until(lambda: len(workers()) == 2, timeout_s=15)
        counted = {pid for pid in workers() if (metrics_dir / f"counter_{pid}.db").exists()}
        assert counted and await router.sample(total) == 40
        killed = next(iter(counted))
        os.kill(killed, signal.SIGKILL)
        await wait_until(lambda: len(workers()) == 2 and killed not in workers(), timeout_s=15)
        await wait_until(lambda: not (metrics_dir / f"counter_{killed}.db").exists(), timeout_s=15)
        assert (metrics_dir / "counter_archive.db").exists()
        for _ in range(4):  # whichever worker answers the scrape
            assert await router.sample(total) == 40
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.communicate, timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()

"""A hostile world against the real router: a well-behaved client (tenant beta) side by side without
and during each attack, and the router's RSS and open descriptors before and after.

Attacks (each --attack-s long, 15 s by default; the issue's figure is 60 s):
  dribbled heads   --heads connections sending one header line every second, never finishing
  idle             --idle connections that send one request and then stay open, idle
  slow bodies      50 uploads to tenant alpha, 100 bytes every 3 s (under the read timeout)
  stuck tenant     the slow uploads plus 50 alpha requests its backend never answers

    .venv/bin/python bench/hostile.py [--attack-s 15] [--heads 1500] [--idle 2000] [--max-connections 8192]

Everything runs on 127.0.0.1: one upstream (in this process), the router as a child process
(`python -m proxy.router`, one worker, its default limits unless told); every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

BETA = {"Host": "beta.agentbar.ai"}
ALPHA = {"Host": "alpha.agentbar.ai"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def upstream() -> tuple[web.AppRunner, str]:
    async def handle(request: web.Request) -> web.Response:
        if request.path == "/hang":
            await asyncio.sleep(120)
        try:
            await request.read()
        except ConnectionResetError:  # the router gave up on a slow upload: the attack, not a fault
            return web.Response(status=499)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    # /hang requests are still sleeping at the end: aiohttp's default waits 60 s for them.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


def proc_figures(pid: int) -> tuple[float, int]:
    rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if line.startswith("VmRSS:"))
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def well_behaved(url: str, seconds: float) -> tuple[int, int, list[float]]:
    """Beta's client: one request at a time on a fresh connection each (as a new customer would)."""
    ok = total = 0
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(force_close=True)) as session:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            total += 1
            try:
                async with session.get(f"{url}/orders/1", headers=BETA) as response:
                    await response.read()
                    ok += response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                pass
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)
    return ok, total, latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


async def dribbled_heads(url: str, n: int, seconds: float) -> None:
    host, port = url.removeprefix("http://").split(":")
    writers = []
    for _ in range(n):
        with contextlib.suppress(OSError):
            writers.append((await asyncio.open_connection(host, int(port)))[1])
    for w in writers:
        w.write(b"GET /orders/1 HTTP/1.1\r\nHost: alpha.agentbar.ai\r\n")
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        await asyncio.sleep(1)
        i += 1
        for w in writers:
            if not w.is_closing():
                w.write(b"X-%d: y\r\n" % i)
    for w in writers:
        w.close()


async def idle_connections(url: str, n: int, seconds: float) -> None:
    host, port = url.removeprefix("http://").split(":")
    streams = []
    for _ in range(n):
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /orders/1 HTTP/1.1\r\nHost: alpha.agentbar.ai\r\n\r\n")
            streams.append((reader, writer))
    await asyncio.sleep(seconds)
    for _, w in streams:
        w.close()


async def _slow(seconds: float) -> AsyncIterator[bytes]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        yield b"y" * 100
        await asyncio.sleep(3)


async def slow_bodies(url: str, seconds: float, *, hung: int = 0) -> None:
    timeout = aiohttp.ClientTimeout(total=seconds + 5)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        async def upload() -> None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.post(f"{url}/payment/create", headers=ALPHA, data=_slow(seconds)) as r:
                    await r.read()

        async def hang() -> None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{url}/hang", headers=ALPHA) as r:
                    await r.read()

        tasks = [asyncio.ensure_future(upload()) for _ in range(50)]
        tasks += [asyncio.ensure_future(hang()) for _ in range(hung)]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--attack-s", type=float, default=15.0)
    parser.add_argument("--heads", type=int, default=1500)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--max-connections", type=int, default=None, help="limits.max_connections (default: its own)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))

    runner, backend = await upstream()
    port, admin = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "routing.yaml"
        limits = f"limits: {{max_connections: {args.max_connections}}}\n" if args.max_connections else ""
        config.write_text(
            f'upstreams:\n  v1: {{url: "{backend}", tenants: [alpha, beta]}}\n'
            f'  v2: {{url: "{backend}", pool_size: 50, read_timeout_s: 30}}\n'
            "base_domain: agentbar.ai\ntenants:\n  alpha: {backend: v2}\n  beta: {backend: v2}\n" + limits)
        router = subprocess.Popen([sys.executable, "-m", "proxy.router", "--config", str(config), "--listen",
                                   f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}", "--log-level",
                                   "WARNING"])
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
                await asyncio.sleep(0.05)
            attacks: list[tuple[str, Callable[[], Awaitable[None]]]] = [
                ("dribbled heads", lambda: dribbled_heads(url, args.heads, args.attack_s)),
                ("idle connections", lambda: idle_connections(url, args.idle, args.attack_s)),
                ("slow bodies", lambda: slow_bodies(url, args.attack_s)),
                ("stuck tenant", lambda: slow_bodies(url, args.attack_s, hung=50)),
            ]
            print(f"{'phase':<28} {'ok/total':>12} {'p50 ms':>8} {'p99 ms':>8} {'RSS MB':>14} {'fds':>11}")
            for name, attack in [("none (baseline)", None), *attacks]:
                before = proc_figures(router.pid)
                duration = args.attack_s
                if attack is None:
                    ok, total, lat = await well_behaved(url, duration)
                else:
                    attacking = asyncio.ensure_future(attack())
                    await asyncio.sleep(min(3.0, duration / 3))  # the attack is in place
                    ok, total, lat = await well_behaved(url, duration - min(3.0, duration / 3))
                    await attacking
                after = proc_figures(router.pid)
                print(f"{name:<28} {f'{ok}/{total}':>12} {pct(lat, 0.5):8.1f} {pct(lat, 0.99):8.1f} "
                      f"{before[0]:6.1f}->{after[0]:<6.1f} {before[1]:5d}->{after[1]:<5d}", flush=True)
                await asyncio.sleep(1)
        finally:
            router.terminate()
            router.wait(timeout=40)
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())

"""The write hold of a cutover: how long it takes every router worker to confirm it, how long the
writes are held, and the latency it adds to the held writes, next to the writes no hold touched.

A real router (in this process, production poll intervals: locks and holds every 2 s, the routing
file every 0.5 s) in front of two echo backends, a scratch state database, steady writes from a few
clients, and FLIPS cutovers of the hold's own steps: hold (all confirm) -> a final sync of
SYNC_S -> flip the routing file -> release to the new backend. Bounded: a few seconds per flip.

    .venv/bin/python bench/cutover_hold.py [--flips 5] [--clients 8] [--sync-s 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from psycopg.conninfo import make_conninfo
from scratch_database import scratch_database

from controlplane.config.edit import set_backend
from controlplane.state.holds import HoldStore
from controlplane.state.schema import STATE_SCHEMA
from proxy.router.app import create_apps

TENANT = "shop"


async def echo(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"ok": True})


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def flip_once(store: HoldStore, config: Path, to: str, sync_s: float) -> tuple[float, float]:
    """One cutover's hold: (seconds until every worker confirmed, seconds held)."""
    hold = store.create(TENANT, 2.0, None)
    with store.connect() as conn:
        while store.unconfirmed(conn, hold):
            time.sleep(0.005)
    confirmed = hold.elapsed_s()
    time.sleep(sync_s)  # the final sync
    set_backend(config, TENANT, to)  # type: ignore[arg-type]
    store.release(TENANT, to, hold.id)
    return confirmed, hold.elapsed_s()


async def main_async(flips: int, clients: int, sync_s: float) -> None:
    upstreams = []
    for _ in range(2):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", echo)
        upstreams.append(await serve(app))
    with scratch_database(state=True) as db, tempfile.TemporaryDirectory() as tmp:
        control = make_conninfo(db.admin_url, user=db.layout.control_role)
        config = Path(tmp) / "routing.yaml"
        config.write_text(f'upstreams:\n  v1: {{url: "{upstreams[0][1]}", tenants: [{TENANT}]}}\n'
                          f'  v2: {{url: "{upstreams[1][1]}"}}\nbase_domain: agentbar.ai\n'
                          f"tenants:\n  {TENANT}:\n    backend: v1\n")
        registry = CollectorRegistry()
        app, admin = create_apps(config, registry, state_database_url=db.router_url, state_schema=STATE_SCHEMA)
        runner, url = await serve(app)
        store = HoldStore(control, STATE_SCHEMA)
        for _ in range(200):  # the router registers on its first poll
            if await asyncio.to_thread(store.alive_workers):
                break
            await asyncio.sleep(0.05)
        held: list[float] = []
        free: list[float] = []
        holding = False
        stop = asyncio.Event()

        async def client() -> None:
            async with aiohttp.ClientSession() as session:
                while not stop.is_set():
                    during = holding
                    started = time.perf_counter()
                    async with session.post(f"{url}/payment/create", data=b"{}",
                                            headers={"Host": f"{TENANT}.agentbar.ai"}) as response:
                        await response.read()
                    (held if during or holding else free).append(time.perf_counter() - started)

        tasks = [asyncio.create_task(client()) for _ in range(clients)]
        await asyncio.sleep(1.0)
        confirms, holds = [], []
        for n in range(flips):
            holding = True
            confirmed, held_s = await asyncio.to_thread(flip_once, store, config, "v2" if n % 2 == 0 else "v1",
                                                        sync_s)
            holding = False
            confirms.append(confirmed)
            holds.append(held_s)
            await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*tasks)
        waited = registry.get_sample_value("dualstack_held_request_wait_seconds_sum") or 0.0
        count = registry.get_sample_value("dualstack_held_request_wait_seconds_count") or 0.0
        await runner.cleanup()
        del admin
    for r, _ in upstreams:
        await r.cleanup()
    free.sort()
    print(f"{flips} flips, {clients} clients, final sync {sync_s:g} s, hold_s 2 (router polls: 2 s, file 0.5 s)")
    print(f"  every worker confirmed in: max {max(confirms) * 1000:7.1f} ms   median "
          f"{statistics.median(confirms) * 1000:7.1f} ms  (LISTEN/NOTIFY)")
    print(f"  writes held (cutover side): max {max(holds) * 1000:7.1f} ms   median {statistics.median(holds) * 1000:7.1f} ms")
    print(f"  writes outside a hold: p50 {free[len(free) // 2] * 1000:6.1f} ms  p99 "
          f"{free[int(len(free) * 0.99)] * 1000:6.1f} ms   |   {int(count)} held writes: waited "
          f"{1000 * waited / max(count, 1):6.1f} ms on average in the router; the slowest write of a hold "
          f"{max(held, default=0.0) * 1000:6.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flips", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sync-s", type=float, default=0.2)
    args = parser.parse_args()
    asyncio.run(main_async(min(args.flips, 20), min(args.clients, 64), min(args.sync_s, 1.5)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Several routers, one state database: how long a rollback takes to reach every router.

Starts --routers router processes (`python -m proxy.router`, each its own port and admin port, one
worker each, as bench/router.py starts them) on one scratch state database (PostgreSQL at
DUALSTACK_BENCH_ADMIN_URL, default the local one), then --rounds times: takes a rollback lock (as
`dualstack rollout rollback` does, LockStore.rollback) and times until every router's /routes says
v1 (controlplane/cutover/probe.py router_serves); then releases it (`rollout ack`) and times until
every router serves v2 again. Each router reads locks every 2 s, so a change takes up to one poll.

    .venv/bin/python bench/routers_rollback.py [--routers 3] [--rounds 5]

Bounded: each wait gives up after 30 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from router import free_port, launch_router
from scratch_database import scratch_database

from controlplane.config import load_config_text
from controlplane.cutover.probe import router_serves
from controlplane.processes import ProcessGroup
from controlplane.state.locks import LOCK_POLL_S, LockStore
from controlplane.state.schema import STATE_SCHEMA

ROUTING = """\
upstreams:
  v1: {url: "http://127.0.0.1:9", tenants: [shop]}
  v2: {url: "http://127.0.0.1:9"}
base_domain: agentbar.ai
tenants:
  shop: {backend: v2}
  other: {backend: v2}
"""
GIVE_UP_S = 30.0


def until_all(admins: list[str], backend: str) -> list[float]:
    """Seconds until each router serves `shop` from `backend` (polled every 20 ms)."""
    started = time.perf_counter()
    reached: dict[str, float] = {}
    while len(reached) < len(admins):
        if time.perf_counter() - started > GIVE_UP_S:
            raise SystemExit(f"not every router serves shop from {backend} after {GIVE_UP_S:.0f} s")
        for admin in admins:
            if admin not in reached and router_serves(admin, "shop")[0] == backend:
                reached[admin] = time.perf_counter() - started
        time.sleep(0.02)
    return [reached[a] for a in admins]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routers", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    ns = parser.parse_args()
    if not 1 <= ns.routers <= 10 or not 1 <= ns.rounds <= 50:
        parser.error("--routers 1..10, --rounds 1..50")
    config = load_config_text(ROUTING, "bench.yaml")
    with tempfile.TemporaryDirectory(prefix="dualstack-bench-routers-") as tmp, \
            scratch_database(state=True) as db:
        workdir = Path(tmp)
        routing = workdir / "routing.yaml"
        routing.write_text(ROUTING)
        group = ProcessGroup(str(workdir))
        admins = []
        try:
            for i in range(ns.routers):
                port, admin = free_port(), free_port()
                child = launch_router(group, f"router-{i}", routing, port, admin, workers=1,
                                      extra=("--state-database-url", db.router_url))
                group.wait_http_ok(child, f"http://127.0.0.1:{admin}/readyz", timeout_s=60)
                admins.append(f"http://127.0.0.1:{admin}")
            locks = LockStore(db.admin_url, STATE_SCHEMA)
            until_all(admins, "v2")
            rollback, release = [], []
            for _ in range(ns.rounds):
                locks.rollback(config, "shop", "bench", "bench")
                rollback.append(max(until_all(admins, "v1")))
                locks.ack("shop", "bench")
                release.append(max(until_all(admins, "v2")))
        finally:
            group.stop()
    print(f"{ns.routers} routers (own ports and admin ports), one state database; lock poll {LOCK_POLL_S:g} s")
    for name, times in (("rollback reaches every router", rollback), ("its release reaches every router", release)):
        print(f"{name:34} median {statistics.median(times):.2f}s  max {max(times):.2f}s  "
              f"({', '.join(f'{t:.2f}' for t in times)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

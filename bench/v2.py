"""v2 throughput: order-status reads and payment creates per second, p50/p99, on real PostgreSQL
(as the application role) with the fake Midtrans on loopback.

    .venv/bin/python bench/v2.py [--workers 2] [--duration 5] [--connections 32]

It makes its own database and roles on the server named by DUALSTACK_BENCH_ADMIN_URL (default:
the local PostgreSQL), drops them afterwards, and prints what each process used in CPU seconds, so
the bottleneck shows. Every run is bounded by --duration; traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo
from router import free_port, run_wrk, tree_cpu_s, wait_port  # bench/router.py, beside this file

from controlplane.db.layout import DatabaseLayout
from controlplane.db.migrate import migrate
from controlplane.db.tenants import NewTenant, TenantAdmin
from controlplane.processes import ProcessGroup

KEY = "SB-Mid-server-BENCH000000001"
CREATE_LUA = """
local counter = 0
local prefix = tostring(math.random(100000, 999999))
request = function()
  counter = counter + 1
  local body = string.format('{"orderId":"B%s-%d","amount":150000,"email":"b@example.com",' ..
    '"phone":"0812","name":"Budi","paymentMethod":"bca"}', prefix, counter)
  return wrk.format("POST", "/payment/create?tenant=bench", {["Content-Type"]="application/json"}, body)
end
"""
STATUS_LUA = """
request = function()
  return wrk.format("GET", string.format("/orders/SEED-%d/status?tenant=bench", math.random(1, 1000)))
end
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    ns = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench/v2.py needs wrk (apt-get install wrk)", file=sys.stderr)
        return 3
    server_url = os.environ.get("DUALSTACK_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
    suffix = secrets.token_hex(3)
    name = f"dualstack_bench_{suffix}"
    layout = DatabaseLayout(owner_role=f"bench_{suffix}_owner", app_role=f"bench_{suffix}_app")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    workdir = Path(tempfile.mkdtemp(prefix="dualstack-bench-v2-"))
    group = ProcessGroup(str(workdir))
    try:
        admin_url = make_conninfo(server_url, dbname=name)
        migrate(admin_url, layout)
        TenantAdmin(admin_url, layout).add(NewTenant("bench", "Bench", "enterprise", KEY, "sandbox"))
        fake_port, v2_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        fake = group.start("fake-midtrans", [sys.executable, "-m", "standins.midtrans", "--listen",
                                             f"127.0.0.1:{fake_port}", "--server-key", KEY], env)
        v2 = group.start("v2",
            [sys.executable, "-m", "proxy.v2", "--listen", f"127.0.0.1:{v2_port}", "--workers", str(ns.workers),
             "--snap-url-sandbox", f"http://127.0.0.1:{fake_port}/sandbox/snap/v1/transactions",
             "--notification-url-template", "http://127.0.0.1:9/webhooks/midtrans?tenant={slug}",
             "--log-level", "WARNING"],
            dict(env, DUALSTACK_DATABASE_URL=make_conninfo(admin_url, user=layout.app_role)))
        pids = {"v2": v2.process.pid, "fake": fake.process.pid}
        wait_port(fake_port)
        wait_port(v2_port)
        time.sleep(1.0)
        base = f"http://127.0.0.1:{v2_port}"
        for i in range(1, 1001):  # orders for the status reads
            body = json.dumps({"orderId": f"SEED-{i}", "amount": 1000, "email": "s@example.com", "phone": "1",
                               "name": "Seed"}).encode()
            request = urllib.request.Request(f"{base}/payment/create?tenant=bench", data=body,
                                             headers={"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=10).read()
        results = []
        for label, lua in (("status reads", STATUS_LUA), ("creates", CREATE_LUA)):
            script = workdir / f"{label.replace(' ', '_')}.lua"
            script.write_text(lua)
            cpu_before = {name: tree_cpu_s(pid) for name, pid in pids.items()}
            pg_before = _postgres_cpu_s()
            requests, rps, p50, p99, errors = run_wrk(f"{base}/", ns.connections, ns.duration, "localhost",
                                                      script=str(script))
            cpu = {name: tree_cpu_s(pid) - cpu_before[name] for name, pid in pids.items()}
            pg = _postgres_cpu_s() - pg_before
            results.append((label, requests, rps, p50, p99, errors, cpu["v2"], cpu["fake"], pg))
        print(f"\nv2 with {ns.workers} workers, {ns.connections} connections, {ns.duration:g}s per run, "
              f"{os.cpu_count()} cores (wrk, PostgreSQL and the fake Midtrans share them)\n")
        print(f"{'':13} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}   "
              f"CPU seconds: {'v2':>5} {'fake':>5} {'postgres':>8}")
        for label, requests, rps, p50, p99, errors, v2_cpu, fake_cpu, pg in results:
            print(f"{label:13} {requests:9d} {rps:8.0f} {p50:8.2f} {p99:8.2f} {errors:6d}   "
                  f"{'':13}{v2_cpu:5.1f} {fake_cpu:5.1f} {pg:8.1f}")
        for label, requests, *_, v2_cpu, _fake, pg in results:
            print(f"{label}: v2 {v2_cpu / requests * 1e6:.0f} us CPU/request, PostgreSQL "
                  f"{pg / requests * 1e6:.0f} us/request")
        return 0
    finally:
        group.stop()  # v2 first (reverse start order), so no request is left waiting on the fake
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in (layout.app_role, layout.owner_role):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        shutil.rmtree(workdir, ignore_errors=True)


def _postgres_cpu_s() -> float:
    """CPU seconds of every PostgreSQL server process on the machine (the benchmark's database)."""
    total = 0.0
    clk = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if "(postgres)" in stat:
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / clk
    return total


if __name__ == "__main__":
    sys.exit(main())

"""v2's status read side by side with a baseline on v1's own stack (Express + pg, bench/v1_baseline.py),
in one run, on the same PostgreSQL; and v2's creates.

    .venv/bin/python bench/v2.py [--duration 6] [--connections 32] [--processes 1 2] [--no-baseline]
                                 [--no-creates | --no-reads]

For each process count (v2 workers; node processes for the baseline): req/s at --connections
connections (wrk), p50/p99 at one connection, CPU per request of the service's own processes
(user + system from /proc, over its loaded slices; CPU@1 over its one-connection slices, what a
request's latency is made of), PostgreSQL's CPU per request (every postgres process on the
machine, so other jobs add noise) and the v2/baseline ratios. Both services run
side by side and take turns in short slices, so a load change on the shared machine hits both
alike. The seeded orders are paid, or pending and two days old, so no status read asks Midtrans
(proxy/v2/read_confirm.py): plain reads only, like the baseline's. Creates (v2 only: req/s at
--connections, p50/p99 at one connection) call the fake Midtrans on loopback.

Bounded: about 2 minutes with the defaults (the npm install included; npm's cache makes later
ones quick). It makes its own database and roles (bench/scratch_database.py) and an npm folder,
and removes them afterwards; traffic stays on 127.0.0.1. Without node and npm the baseline is
skipped, and said so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import psycopg
from router import free_port, run_wrk, tree_cpu_s, wait_port  # bench/router.py, beside this file
from scratch_database import ScratchDatabase, scratch_database  # bench/scratch_database.py, beside this file
from v1_baseline import install_baseline, seed_v1_orders, start_baseline  # bench/v1_baseline.py

from controlplane.db.tenants import NewTenant, TenantAdmin
from controlplane.processes import Child, ProcessGroup

KEY = "SB-Mid-server-BENCH000000001"
SEEDED = 1000
SLICE_S = 2.0  # each service in turn for this long, so both see the same machine
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
STATUS_LUA = f"""
request = function()
  return wrk.format("GET", string.format("/orders/SEED-%d/status?tenant=bench", math.random(1, {SEEDED})))
end
"""


@dataclass(frozen=True)
class Row:
    target: str
    processes: int
    rps: float  # at --connections
    p99_loaded_ms: float
    p50_ms: float  # at one connection
    p99_ms: float
    cpu_us: float  # the service's processes, per request, over the loaded run
    cpu_one_us: float  # the same at one connection: what a request's latency is made of
    postgres_us: float
    errors: int


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=6.0,
                        help=f"seconds of load per service and measurement, in slices of {SLICE_S:g} s")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2],
                        help="v2 workers / baseline node processes to measure")
    parser.add_argument("--no-baseline", action="store_true", help="measure v2 alone")
    parser.add_argument("--no-creates", action="store_true", help="status reads only")
    parser.add_argument("--no-reads", action="store_true", help="creates only")
    ns = parser.parse_args()
    if ns.no_creates and ns.no_reads:
        parser.error("--no-creates and --no-reads leave nothing to measure")
    if not shutil.which("wrk"):
        print("bench/v2.py needs wrk (apt-get install wrk)", file=sys.stderr)
        return 3
    workdir = Path(tempfile.mkdtemp(prefix="dualstack-bench-v2-"))
    try:
        skipped = "--no-baseline" if ns.no_baseline else install_baseline(workdir / "v1-baseline")
        if skipped:
            print(f"baseline skipped: {skipped}", file=sys.stderr)
        with scratch_database() as database:
            seed_orders(database)
            return _run(ns, database, workdir, baseline=not skipped)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def seed_orders(database: ScratchDatabase) -> None:
    """The bench tenant and its orders, written directly: paid, or pending and two days old."""
    TenantAdmin(database.admin_url, database.layout).add(NewTenant("bench", "Bench", "enterprise", KEY, "sandbox"))
    schema = database.layout.schema
    with psycopg.connect(database.admin_url, autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{schema}".customers (tenant_id, email, phone, name) '
            f"SELECT id, 's@example.com', '0812', 'Seed' FROM \"{schema}\".tenants WHERE slug = 'bench'")
        conn.execute(
            f'INSERT INTO "{schema}".orders (tenant_id, order_id, customer_id, customer_name, email, phone, '
            "gross_amount, payment_method, payment_status, snap_token, redirect_url, created_at) "
            "SELECT c.tenant_id, 'SEED-' || i, c.id, 'Seed', 's@example.com', '0812', 1000, 'bca', "
            "CASE WHEN i %% 2 = 0 THEN 'paid' ELSE 'pending' END, 'tok-' || i, 'https://pay.invalid/' || i, "
            f"now() - interval '2 days' FROM \"{schema}\".customers c, generate_series(1, %s) i", (SEEDED,))
        conn.execute(f'ANALYZE "{schema}".orders')
    seed_v1_orders(database.admin_url, SEEDED)


def _run(ns: argparse.Namespace, database: ScratchDatabase, workdir: Path, *, baseline: bool) -> int:
    status_lua, create_lua = workdir / "status.lua", workdir / "create.lua"
    status_lua.write_text(STATUS_LUA)
    create_lua.write_text(CREATE_LUA)
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    reads: list[Row] = []
    creates: list[Row] = []
    started = time.monotonic()
    for processes in ns.processes:
        group = ProcessGroup(str(workdir))
        try:
            fake_port, v2_port = free_port(), free_port()
            group.start("fake-midtrans", [sys.executable, "-m", "standins.midtrans", "--listen",
                                          f"127.0.0.1:{fake_port}", "--server-key", KEY], env)
            v2 = group.start(f"v2-{processes}", [
                sys.executable, "-m", "proxy.v2", "--listen", f"127.0.0.1:{v2_port}", "--workers", str(processes),
                "--snap-url-sandbox", f"http://127.0.0.1:{fake_port}/sandbox/snap/v1/transactions",
                "--core-url-sandbox", f"http://127.0.0.1:{fake_port}/sandbox",
                "--notification-url-template", "http://127.0.0.1:9/webhooks/midtrans?tenant={slug}",
                "--log-level", "WARNING"], dict(env, DUALSTACK_DATABASE_URL=database.app_url))
            services = [Service("v2", v2, v2_port)]
            if baseline:
                port = free_port()
                node = start_baseline(group, workdir / "v1-baseline", database.admin_url, port, processes)
                services.append(Service("baseline", node, port))
            wait_port(fake_port)
            for service in services:
                service.ready(ns.connections, status_lua)
            if not ns.no_reads:
                reads.extend(_interleaved(services, processes, status_lua, ns))
            if not ns.no_creates:
                creates.append(_loaded(services[0], processes, create_lua, ns))
        finally:
            group.stop()
    _report(ns, reads, creates, time.monotonic() - started)
    return 0


@dataclass
class Service:
    name: str
    child: Child
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def ready(self, connections: int, script: Path) -> None:
        wait_port(self.port)
        _wait_answering(self.url + "orders/SEED-2/status?tenant=bench")
        run_wrk(self.url, connections, 1.0, "localhost", script=str(script))  # warm pools and prepared plans


@dataclass
class Tally:
    requests: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    postgres_s: float = 0.0
    requests_one: int = 0
    cpu_one_s: float = 0.0
    errors: int = 0
    p99_loaded_ms: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)


def _interleaved(services: list[Service], processes: int, script: Path, ns: argparse.Namespace) -> list[Row]:
    """Each service in turn, in slices of SLICE_S, so a load change on the shared machine hits both
    alike. Throughput and CPU add up over the slices; latency percentiles are the slices' medians."""
    tallies = {s.name: Tally() for s in services}
    for connections in (ns.connections, 1):
        for _ in range(max(1, round(ns.duration / SLICE_S))):
            for service in services:
                tally = tallies[service.name]
                cpu_before, pg_before = tree_cpu_s(service.child.process.pid), _postgres_cpu_s()
                requests, rps, p50, p99, errors = run_wrk(service.url, connections, SLICE_S, "localhost",
                                                          script=str(script))
                tally.errors += errors
                if connections == 1:
                    tally.p50_ms.append(p50)
                    tally.p99_ms.append(p99)
                    tally.cpu_one_s += tree_cpu_s(service.child.process.pid) - cpu_before
                    tally.requests_one += requests
                    continue
                tally.cpu_s += tree_cpu_s(service.child.process.pid) - cpu_before
                tally.postgres_s += _postgres_cpu_s() - pg_before
                tally.requests += requests
                tally.seconds += requests / rps if rps else SLICE_S
                tally.p99_loaded_ms.append(p99)
    rows = []
    for name, t in tallies.items():
        per = 1e6 / max(t.requests, 1)
        rows.append(Row(name, processes, t.requests / max(t.seconds, 1e-9), median(t.p99_loaded_ms),
                        median(t.p50_ms), median(t.p99_ms), t.cpu_s * per, t.cpu_one_s * 1e6 / max(t.requests_one, 1),
                        t.postgres_s * per, t.errors))
    return rows


def _loaded(service: Service, processes: int, script: Path, ns: argparse.Namespace) -> Row:
    """Load at --connections (throughput, CPU), then one connection (latency), each --duration."""
    run_wrk(service.url, ns.connections, 1.0, "localhost", script=str(script))
    cpu_before, pg_before = tree_cpu_s(service.child.process.pid), _postgres_cpu_s()
    requests, rps, _p50, p99_loaded, errors = run_wrk(service.url, ns.connections, ns.duration, "localhost",
                                                      script=str(script))
    cpu, pg = tree_cpu_s(service.child.process.pid) - cpu_before, _postgres_cpu_s() - pg_before
    cpu_before = tree_cpu_s(service.child.process.pid)
    requests_one, _rps, p50, p99, more_errors = run_wrk(service.url, 1, ns.duration, "localhost", script=str(script))
    cpu_one = tree_cpu_s(service.child.process.pid) - cpu_before
    per = 1e6 / max(requests, 1)
    return Row(service.name, processes, rps, p99_loaded, p50, p99, cpu * per, cpu_one * 1e6 / max(requests_one, 1),
               pg * per, errors + more_errors)


def _wait_answering(url: str, timeout_s: float = 20.0) -> None:
    """Until the service answers a seeded order (every worker started: give them a moment more)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                json.loads(response.read())
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    time.sleep(1.0)


def _report(ns: argparse.Namespace, reads: list[Row], creates: list[Row], elapsed_s: float) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{ns.duration:g}s per measurement, {os.cpu_count()} cores shared by wrk, PostgreSQL and the service; "
          f"{elapsed_s:.0f}s in all; load average at the end {load}")
    header = (f"{'target':9} {'procs':>5} {f'req/s@{ns.connections}':>10} {f'p99@{ns.connections} ms':>11} "
              f"{'p50@1 us':>9} {'p99@1 us':>9} {'CPU us/req':>10} {'CPU@1 us':>9} {'PG us/req':>9} {'errors':>6}")
    if reads:
        print(f"\nGET /orders/{{id}}/status ({SEEDED} seeded orders, none asks Midtrans)\n")
        print(header)
    for r in reads:
        print(_line(r))
    by = {(r.target, r.processes): r for r in reads}
    for processes in ns.processes:
        v2, base = by.get(("v2", processes)), by.get(("baseline", processes))
        if v2 and base:
            print(f"v2/baseline, {processes} process{'es' if processes > 1 else ''}: throughput "
                  f"{_ratio(v2, base, lambda r: r.rps)}, p50@1 {_ratio(v2, base, lambda r: r.p50_ms)}, "
                  f"p99@1 {_ratio(v2, base, lambda r: r.p99_ms)}, CPU per request {_ratio(v2, base, lambda r: r.cpu_us)} "
                  f"(at one connection {_ratio(v2, base, lambda r: r.cpu_one_us)})")
    if creates:
        print(f"\nPOST /payment/create (v2, fake Midtrans on loopback; req/s at {ns.connections} connections, "
              "latency at one)\n")
        print(header)
        for r in creates:
            print(_line(r))


def _line(r: Row) -> str:
    return (f"{r.target:9} {r.processes:5d} {r.rps:10.0f} {r.p99_loaded_ms:11.2f} {r.p50_ms * 1000:9.0f} "
            f"{r.p99_ms * 1000:9.0f} {r.cpu_us:10.0f} {r.cpu_one_us:9.0f} {r.postgres_us:9.0f} {r.errors:6d}")


def _ratio(v2: Row, base: Row, value: Callable[[Row], float]) -> str:
    return f"{value(v2) / value(base):.2f}x" if value(base) else "-"


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

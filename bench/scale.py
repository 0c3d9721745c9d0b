"""Ten thousand tenants, side by side with one: start-up, /metrics, throughput and validation.

Generates a routing file with --tenants tenants (the first on v1, named in upstreams.v1.tenants;
the rest on v2; --detailed of them shadowed and as many soaking in a rollout, written to a scratch
state database the router reads), starts the real router (`python -m proxy.router`, 2 workers, as
bench/router.py does) in front of one nginx upstream, and prints:
- how long until the router answers a request (from process start; median of --starts);
- /metrics after wrk sent traffic spread over --active tenants: scrape time, size, series count,
  whether a soaking tenant's zero series and a shadowed tenant's latency are there, promtool's lint;
- throughput with --tenants configured (traffic over --active) / one tenant configured;
- throughput and p99 while the routing file changes every 2 s (one tenant flipped each time) / steady,
  alternated over --reload-rounds, and how long a change takes to reach every worker;
- `dualstack validate` on the file (a process, start-up included);
- RSS per worker and the size of the multiprocess metrics folder.

    .venv/bin/python bench/scale.py [--tenants 10000] [--active 2000] [--duration 5]

Needs wrk and nginx; PostgreSQL at DUALSTACK_BENCH_ADMIN_URL (default: the local one) for the
rollouts. Traffic stays on 127.0.0.1; the whole run takes about two minutes (bounded: every step has a
timeout, the load runs --duration seconds each).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from router import BODY, free_port, launch_router, nginx_binary, run_wrk, start_nginx, wait_port
from scratch_database import scratch_database

from controlplane.processes import Child, ProcessGroup
from controlplane.rollout.decide import Memory
from controlplane.state.rollouts import Phase, RolloutStore
from controlplane.state.schema import STATE_SCHEMA

PATH = "/orders/ORDER-1/status"


def slug(i: int) -> str:
    return f"t{i:05d}"


def routing_file(path: Path, upstream: str, tenants: int, shadowed: range, first_on: str = "v1") -> None:
    """Written as an editor saves (a new file renamed over the old), so a watcher never reads half of it."""
    lines = ["upstreams:", f'  v1: {{url: "{upstream}", tenants: [{slug(0)}]}}', f'  v2: {{url: "{upstream}"}}',
             "base_domain: agentbar.ai", "tenants:", f"  {slug(0)}: {{backend: {first_on}}}"]
    for i in range(1, tenants):
        shadow = ", shadow: {sample_rate: 0.1}" if i in shadowed else ""
        lines.append(f"  {slug(i)}: {{backend: v2{shadow}}}")
    partial = path.with_suffix(".partial")
    partial.write_text("\n".join(lines) + "\n")
    os.replace(partial, path)


class Flipper(threading.Thread):
    """Flips the first tenant between v1 and v2 every `interval_s` until stopped (each a real change)."""

    def __init__(self, flip: Callable[[str], None], interval_s: float = 2.0) -> None:
        super().__init__(name="flipper", daemon=True)
        self.flip, self.interval_s = flip, interval_s
        self.stopped = threading.Event()
        self.flips = 0
        self.on = "v1"

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            self.on = "v2" if self.on == "v1" else "v1"
            self.flip(self.on)
            self.flips += 1


def seconds_to_take_effect(port: int, flip: Callable[[str], None], backend: str, streak: int = 20,
                           timeout_s: float = 30.0) -> float:
    """From the file's rewrite to the first of `streak` answers in a row (each on a new connection, so
    every worker answers some) from the new backend."""
    started = time.monotonic()
    flip(backend)
    run_started, run = 0.0, 0
    while time.monotonic() - started < timeout_s:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{PATH}", headers={"Host": f"{slug(0)}.agentbar.ai"})
        with urllib.request.urlopen(request, timeout=5.0) as response:
            response.read()
            answered = response.headers["X-Dualstack-Backend"]
        if answered != backend:
            run = 0
            continue
        if run == 0:
            run_started = time.monotonic()
        run += 1
        if run >= streak:
            return run_started - started
    raise RuntimeError(f"the flip to {backend} did not take effect within {timeout_s:g}s")


def spread_script(path: Path, active: int) -> None:
    """A wrk script sending each request to the next of `active` tenants (by Host), t00000 first.
    Both runs use one (with one tenant, `active` 1), so wrk's own cost is the same in both."""
    path.write_text(f"""\
local i = -1
request = function()
  i = (i + 1) % {active}
  return wrk.format("GET", "{PATH}", {{["Host"] = string.format("t%05d.agentbar.ai", i)}})
end
""")


def get(url: str, host: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Host": host})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return response.status, response.read()


def seconds_until_answer(child: Child, port: int, host: str, timeout_s: float = 60.0) -> float:
    """From the router process's start (its Popen) to its first 200 for `host`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if child.process.poll() is not None:
            raise RuntimeError(f"router exited: {child.tail()}")
        try:
            if get(f"http://127.0.0.1:{port}{PATH}", host, timeout_s=1.0)[0] == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"router did not answer within {timeout_s:g}s")


def scrape(admin: int) -> tuple[float, bytes]:
    started = time.perf_counter()
    status, body = get(f"http://127.0.0.1:{admin}/metrics", "localhost", timeout_s=60.0)
    assert status == 200
    return time.perf_counter() - started, body


def series(body: bytes) -> list[str]:
    return [line for line in body.decode().splitlines() if line and not line.startswith("#")]


def by_family(lines: list[str]) -> list[tuple[str, int]]:
    """Series per metric (a histogram's _bucket, _count and _sum together), largest first."""
    counts: dict[str, int] = {}
    for line in lines:
        name = line.split("{", 1)[0].split(" ", 1)[0].removeprefix("dualstack_")
        for suffix in ("_bucket", "_count", "_sum"):
            name = name.removesuffix(suffix)
        counts[name] = counts.get(name, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])


def worker_rss_mb(pid: int) -> list[float]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    out = []
    for child in children:
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out.append(int(line.split()[1]) / 1024)
    return out


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.iterdir()) / 1e6


def promtool_lint(body: bytes) -> str:
    if not shutil.which("promtool"):
        return "promtool not installed"
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60, check=False)
    out = (check.stdout + check.stderr).decode().strip()
    return "clean" if check.returncode == 0 and not out else out.splitlines()[0] if out else "ok"


def validate_s(routing: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "controlplane", "validate", str(routing)], check=True,
                   capture_output=True, timeout=60)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--active", type=int, default=2_000, help="tenants the traffic is spread over")
    parser.add_argument("--detailed", type=int, default=10, help="tenants shadowed, and as many in a rollout")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per throughput run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs per router, alternated")
    parser.add_argument("--starts", type=int, default=3, help="start-ups timed per router")
    parser.add_argument("--reload-rounds", type=int, default=4,
                        help="steady runs and runs with the file changing every 2 s, alternated")
    ns = parser.parse_args()
    if not (shutil.which("wrk") and nginx_binary()):
        print("needs wrk and nginx", file=sys.stderr)
        return 2
    # Both sets among the active tenants, so their detail has traffic: shadowed first, then soaking.
    shadowed = range(1, 1 + ns.detailed)
    soaking = range(1 + ns.detailed, 1 + 2 * ns.detailed)

    workdir = Path(tempfile.mkdtemp(prefix="dualstack-scale-"))
    group = ProcessGroup(str(workdir))
    try:
        with scratch_database(state=True) as database:
            store = RolloutStore(database.admin_url, STATE_SCHEMA)
            for i in soaking:
                store.save(slug(i), Phase.SOAKING, datetime.now(UTC), Memory())
            return run(ns, workdir, group, database.router_url, shadowed, soaking)
    finally:
        group.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run(ns: argparse.Namespace, workdir: Path, group: ProcessGroup, state_url: str,
        shadowed: range, soaking: range) -> int:
    upstream_port = free_port()
    start_nginx(group, workdir, "upstream", f"""
        server {{ listen 127.0.0.1:{upstream_port}; keepalive_requests 100000;
                  location / {{ default_type application/json; return 200 '{BODY}'; }} }}""", 1)
    wait_port(upstream_port)
    upstream = f"http://127.0.0.1:{upstream_port}"
    many, one = workdir / "routing-many.yaml", workdir / "routing-one.yaml"
    routing_file(many, upstream, ns.tenants, shadowed)
    routing_file(one, upstream, 1, range(0))
    scripts = {1: workdir / "one.lua", ns.tenants: workdir / "spread.lua"}
    spread_script(scripts[1], 1)
    spread_script(scripts[ns.tenants], ns.active)

    routers = {}
    for name, routing, tenants in (("one", one, 1), ("many", many, ns.tenants)):
        answers_s = []
        for start in range(ns.starts):  # the last one started stays up for the rest
            port, admin = free_port(), free_port()
            metrics_dir = workdir / f"metrics-{name}-{start}"
            child = launch_router(group, f"router-{name}-{start}", routing, port, admin, workers=ns.workers,
                                  extra=("--state-database-url", state_url), metrics_dir=metrics_dir)
            answers_s.append(seconds_until_answer(child, port, f"{slug(0)}.agentbar.ai"))
            if start < ns.starts - 1:
                child.process.terminate()
                child.process.wait(timeout=30)
        routers[name] = Router(name, tenants, child, port, admin, metrics_dir, statistics.median(answers_s),
                               max(answers_s))
    time.sleep(2.5)  # every worker up, and one read of the rollouts from the state database
    # Alternated, best of --rounds each: the machine is shared, and a neighbour's burst should not
    # land on one side only.
    for router in routers.values():
        run_wrk(router.url, ns.connections, 1.0, "-", str(scripts[router.tenants]))  # warm-up: every tenant seen
    for _ in range(ns.rounds):
        for router in routers.values():
            router.runs.append(run_wrk(router.url, ns.connections, ns.duration, "-", str(scripts[router.tenants])))
    reloads = reload_rows(ns, routers["many"], str(scripts[ns.tenants]),
                          lambda on: routing_file(many, upstream, ns.tenants, shadowed, first_on=on))
    time.sleep(SHADOW_SETTLE_S)

    rows: list[tuple[str, str, str]] = []
    for router in routers.values():
        scrapes = [scrape(router.admin) for _ in range(5)]
        body = scrapes[-1][1]
        lines = series(body)
        _, rps, p50, p99, errors = max(router.runs, key=lambda r: r[1])
        name = router.name
        rows += [
            (f"answers after start ({name}, median / max of {ns.starts})",
             f"{router.answer_s:.2f} / {router.answer_max_s:.2f} s", "< 2 s"),
            (f"throughput ({name}: {router.tenants:,} configured, traffic over {min(router.tenants, ns.active):,})",
             f"{rps:,.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, {errors} errors", ""),
            (f"/metrics scrape time ({name}, median / max of 5)",
             f"{statistics.median(s for s, _ in scrapes):.3f} / {max(s for s, _ in scrapes):.3f} s", "< 1 s"),
            (f"/metrics size ({name})", f"{len(body) / 1e6:.2f} MB", "< 10 MB"),
            (f"/metrics series ({name})", f"{len(lines):,}"
             f" ({sum('_bucket{' in line for line in lines):,} histogram buckets)", ""),
            (f"RSS per worker ({name})", ", ".join(f"{mb:.0f} MB" for mb in worker_rss_mb(router.child.process.pid)),
             ""),
            (f"multiprocess folder ({name})", f"{folder_mb(router.metrics_dir):.1f} MB", ""),
        ]
        if router.tenants > 1:
            rows += [
                ("soaking tenant's zero series (5xx write, v2)", _present(
                    lines, f'dualstack_requests_total{{backend="v2",code_class="5xx",route="write",'
                    f'tenant="{slug(soaking[0])}"}} 0.0'), "present"),
                ("shadowed tenant's own latency", _present(
                    lines, f'dualstack_request_duration_seconds_count{{backend="v2",route="read",'
                    f'tenant="{slug(shadowed[0])}"}}'), "present"),
                ("promtool check metrics", promtool_lint(body), "clean"),
                ("series by metric (largest)", ", ".join(f"{n} {c:,}" for n, c in by_family(lines)[:5]), ""),
            ]
    best = {name: max(r[1] for r in router.runs) for name, router in routers.items()}
    rows.append(("answers after start: many - one (what the tenants cost)",
                 f"{routers['many'].answer_s - routers['one'].answer_s:+.2f} s", ""))
    rows.append((f"throughput {ns.tenants:,} configured / 1 (best of {ns.rounds} each)",
                 f"{best['many'] / best['one']:.2f}x", ">= 0.9x"))
    rows += reloads
    rows.append((f"dualstack validate ({ns.tenants:,} tenants, process start-up included)",
                 f"{validate_s(many):.2f} s", "< 1 s"))
    print(f"\n{ns.tenants:,} tenants ({len(shadowed)} shadowed, {len(soaking)} soaking), traffic over {ns.active:,}; "
          f"router {ns.workers} workers; wrk {ns.connections} connections, {ns.duration:g} s per run\n")
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':{width}}  {'value':50}  want")
    for what, value, want in rows:
        print(f"{what:{width}}  {value:50}  {want}")
    return 0


@dataclass
class Router:
    name: str
    tenants: int
    child: Child
    port: int
    admin: int
    metrics_dir: Path
    answer_s: float  # median
    answer_max_s: float
    runs: list[tuple[int, float, float, float, int]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"


SHADOW_SETTLE_S = 1.5  # shadow outcomes are exported every second


def reload_rows(ns: argparse.Namespace, router: Router, script: str,
                flip: Callable[[str], None]) -> list[tuple[str, str, str]]:
    """Steady runs and runs with the file changing every 2 s, alternated; then changes timed one by one."""
    steady, reloading = [], []
    flips = 0
    for _ in range(ns.reload_rounds):
        steady.append(run_wrk(router.url, ns.connections, ns.duration, "-", script))
        flipper = Flipper(flip)
        flipper.start()
        try:
            reloading.append(run_wrk(router.url, ns.connections, ns.duration, "-", script))
        finally:
            flipper.stopped.set()
            flipper.join()
        flips += flipper.flips
        flip("v1")  # back where it started, before the next steady run
        time.sleep(1.5)
    effects = [seconds_to_take_effect(router.port, flip, backend) for backend in ("v2", "v1", "v2", "v1")]
    rps = [statistics.median(r[1] for r in runs) for runs in (steady, reloading)]
    p99 = [statistics.median(r[3] for r in runs) for runs in (steady, reloading)]
    errors = sum(r[4] for r in (*steady, *reloading))
    return [
        (f"steady ({ns.tenants:,} configured; median of {ns.reload_rounds})",
         f"{rps[0]:,.0f} req/s, p99 {p99[0]:.2f} ms", ""),
        (f"file changed every 2 s ({flips} changes in {ns.reload_rounds} runs)",
         f"{rps[1]:,.0f} req/s, p99 {p99[1]:.2f} ms, {errors} errors in all", ""),
        ("throughput while reloading / steady", f"{rps[1] / rps[0]:.2f}x", ">= 0.9x"),
        ("p99 while reloading / steady", f"{p99[1] / p99[0]:.2f}x", "<= 1.5x"),
        ("a change takes effect in every worker (median / max of 4)",
         f"{statistics.median(effects):.2f} / {max(effects):.2f} s", "< 2 s"),
    ]


def _present(lines: list[str], prefix: str) -> str:
    return "present" if any(line.startswith(prefix) for line in lines) else "MISSING"


if __name__ == "__main__":
    sys.exit(main())

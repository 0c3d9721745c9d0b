"""The decider at scale: one pass over --tenants soaking tenants against a real Prometheus.

Writes synthetic history as OpenMetrics (each tenant on v1 for --before minutes, then soaking on v2
for --soak minutes: requests by route and code class, both latency histograms, shadow comparisons
for one tenant in four; v1's counters stay exported after the move, as a router keeps them), turns
it into TSDB blocks with `promtool tsdb create-blocks-from openmetrics`, serves them with a real
Prometheus, and prints side by side:
- reading the evidence one tenant at a time (the query pattern the decider had: six range queries per
  tenant, v1's the same for every one of them) against one reading for all tenants (a query per
  measurement, grouped by tenant), for the first pass of a soak (its history and every slice so
  far) and a steady pass (one new slice): seconds and queries;
- the whole decider pass (`run_once`: evidence, decisions, the state database's records) with a
  scratch state database (PostgreSQL at DUALSTACK_BENCH_ADMIN_URL, default the local one).
One tenant at a time is measured on --sample tenants and scaled to --tenants (it is linear).

    .venv/bin/python bench/decider_scale.py [--tenants 1000] [--sample 100]

Needs prometheus and promtool. Bounded: generation and block creation take about a minute at
1,000 tenants; every query has a timeout.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from router import free_port
from scratch_database import scratch_database

from controlplane.config import load_config_text
from controlplane.rollout.decide import Memory
from controlplane.rollout.decider import run_once
from controlplane.rollout.evidence import Evidence
from controlplane.rollout.sampling import poisson
from controlplane.rollout.sources import PrometheusSource, Read
from controlplane.state.rollouts import Phase, RolloutStore
from controlplane.state.schema import STATE_SCHEMA

BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SHARE_UNDER = (0.0, 0.01, 0.05, 0.2, 0.55, 0.8, 0.93, 0.98, 0.995, 0.998, 0.999, 1.0, 1.0, 1.0)
STEP_S = 60


def slug(i: int) -> str:
    return f"t{i:05d}"


class PerTenant:
    """The evidence read one tenant at a time: the queries the decider used to send."""

    def __init__(self, source: PrometheusSource) -> None:
        self.source = source

    def evidence_for(self, reads: Sequence[Read], at: datetime) -> dict[str, Evidence]:
        return {r.tenant: self.source.evidence_for([r], at)[r.tenant] for r in reads}


def write_history(out: TextIO, tenants: int, start: int, before_min: int, soak_min: int, seed: int = 7) -> None:
    """Counters sampled once a minute, one router (instance a:1)."""
    rng = random.Random(seed)
    minutes = before_min + soak_min + 1
    families: dict[str, list[str]] = {"dualstack_requests": [], "dualstack_request_duration_seconds": [],
                                      "dualstack_shadow_comparisons": [], "dualstack_shadow_answers": []}

    def counter(family: str, name: str, labels: str, per_minute: list[float]) -> None:
        value, lines = 0, families[family]
        for m in range(minutes):
            value += poisson(rng, per_minute[m]) if per_minute[m] else 0
            lines.append(f'{name}{{instance="a:1",job="router",{labels}}} {value} {start + m * STEP_S}')

    def histogram(labels: str, per_minute: list[float]) -> None:
        counts = [poisson(rng, r) if r else 0 for r in per_minute]
        totals = [sum(counts[:m + 1]) for m in range(minutes)]
        for le, share in (*zip(BOUNDS, SHARE_UNDER, strict=True), ("+Inf", 1.0)):
            lines = families["dualstack_request_duration_seconds"]
            lines.extend(f'dualstack_request_duration_seconds_bucket{{instance="a:1",job="router",{labels},le="{le}"}} '
                         f"{round(totals[m] * share)} {start + m * STEP_S}" for m in range(minutes))

    # v1 keeps serving the tenants not moved yet: the concurrent baseline, one tenant here.
    for route, code, rate in (("read", "2xx", 200.0), ("read", "5xx", 1.0), ("write", "2xx", 60.0)):
        counter("dualstack_requests", "dualstack_requests_total",
                f'backend="v1",code_class="{code}",route="{route}",tenant="legacy"', [rate] * minutes)
    histogram('backend="v1",route="read",tenant="legacy"', [200.0] * minutes)
    histogram('backend="v1",route="write",tenant="legacy"', [60.0] * minutes)
    for i in range(1, tenants + 1):
        t = slug(i)
        on_v1 = [1.0 if m <= before_min else 0.0 for m in range(minutes)]
        on_v2 = [0.0 if m <= before_min else 1.0 for m in range(minutes)]
        for backend, share in (("v1", on_v1), ("v2", on_v2)):
            for route, code, rate in (("read", "2xx", 10.0), ("read", "5xx", 0.05), ("write", "2xx", 3.0),
                                      ("webhook", "2xx", 2.0)):
                counter("dualstack_requests", "dualstack_requests_total",
                        f'backend="{backend}",code_class="{code}",route="{route}",tenant="{t}"',
                        [rate * s for s in share])
            histogram(f'backend="{backend}",route="read",tenant="{t}"', [10.0 * s for s in share])
            histogram(f'backend="{backend}",route="write",tenant="{t}"', [3.0 * s for s in share])
        if i % 4 == 0:
            for result, rate in (("match", 1.0), ("mismatch", 0.0), ("noise", 0.1)):
                counter("dualstack_shadow_comparisons", "dualstack_shadow_comparisons_total",
                        f'result="{result}",tenant="{t}"', [rate * s for s in on_v2])
            counter("dualstack_shadow_answers", "dualstack_shadow_answers_total",
                    f'backend="v1",code_class="2xx",side="shadow",tenant="{t}"', [1.0 * s for s in on_v2])
    for family, lines in families.items():
        kind = "histogram" if family.endswith("seconds") else "counter"
        out.write(f"# TYPE {family} {kind}\n")
        out.write("\n".join(lines) + "\n")
    out.write("# EOF\n")


def start_prometheus(workdir: Path, tenants: int, start: int, before_min: int, soak_min: int
                     ) -> tuple[subprocess.Popen[bytes], str]:
    history, data = workdir / "history.om", workdir / "data"
    with history.open("w") as out:
        write_history(out, tenants, start, before_min, soak_min)
    made = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(history), str(data)],
                          capture_output=True, text=True, check=False, timeout=600)
    if made.returncode != 0:
        raise SystemExit(f"promtool failed: {made.stderr or made.stdout}")
    history.unlink()
    config = workdir / "prometheus.yml"
    config.write_text("global: {scrape_interval: 15s}\n")
    port = free_port()
    process = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
                                f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=10y"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return process, base
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise SystemExit("prometheus did not start within 120 s")


def timed_read(source: PrometheusSource, reader: PerTenant | PrometheusSource, reads: list[Read],
               at: datetime) -> tuple[float, int, dict[str, Evidence]]:
    before = source.queries
    started = time.perf_counter()
    evidence = reader.evidence_for(reads, at)
    return time.perf_counter() - started, source.queries - before, evidence


def routing(tenants: int) -> str:
    lines = ['upstreams: {v1: {url: "http://127.0.0.1:9", tenants: [legacy]}, v2: {url: "http://127.0.0.1:9"}}',
             "base_domain: agentbar.ai", "tenants:", "  legacy: {backend: v1}"]
    lines += [f"  {slug(i)}: {{backend: v2}}" for i in range(1, tenants + 1)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=100, help="tenants read one at a time (scaled up)")
    parser.add_argument("--before", type=int, default=10, help="minutes on v1 before the soak")
    parser.add_argument("--soak", type=int, default=12, help="minutes of soak in the history")
    ns = parser.parse_args()
    if ns.tenants < 1 or not 1 <= ns.sample <= ns.tenants or ns.soak < 3:
        parser.error("--tenants >= 1, 1 <= --sample <= --tenants, --soak >= 3")
    for tool in ("prometheus", "promtool"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")
    start = (int(time.time()) // 3600 - 4) * 3600  # whole hours in the past: the blocks are history
    soak_started = datetime.fromtimestamp(start + ns.before * STEP_S, UTC)
    first_at = datetime.fromtimestamp(soak_started.timestamp() + (ns.soak - 2) * STEP_S, UTC)
    steady_at = datetime.fromtimestamp(first_at.timestamp() + STEP_S, UTC)
    with tempfile.TemporaryDirectory(prefix="dualstack-decider-scale-") as tmp:
        made = time.perf_counter()
        process, base = start_prometheus(Path(tmp), ns.tenants, start, ns.before, ns.soak)
        print(f"{ns.tenants} soaking tenants' history ({ns.before} min on v1, {ns.soak} min on v2) in Prometheus: "
              f"{time.perf_counter() - made:.0f}s to generate and load")
        try:
            return measure(ns, base, soak_started, first_at, steady_at)
        finally:
            process.terminate()
            process.wait(timeout=30)


def measure(ns: argparse.Namespace, base: str, soak_started: datetime, first_at: datetime,
            steady_at: datetime) -> int:
    source = PrometheusSource(base, timeout_s=60.0, lag_s=0.0)
    tenants = [slug(i) for i in range(1, ns.tenants + 1)]
    started_s = soak_started.timestamp()
    scale = ns.tenants / ns.sample
    print(f"{'reading':44} {'one tenant at a time':>24} {'all at once':>16} {'ratio':>7}")
    checks: list[bool] = []
    for name, at, after_s in (("first pass (history + every slice so far)", first_at, started_s),
                              ("steady pass (one new slice)", steady_at, first_at.timestamp())):
        reads = [Read(t, soak_started, after_s) for t in tenants]
        one_s, one_q, one = timed_read(source, PerTenant(source), reads[:ns.sample], at)
        all_s, all_q, every = timed_read(source, source, reads, at)
        checks.append(all(every[t] == one[t] for t in one))  # the same evidence, tenant by tenant
        requests = sum(sum(s.v2_requests) for e in every.values() for s in e.slices)
        checks.append(requests > 0 and all(e.slices and e.slices[-1].latency for e in every.values()))
        before_s, before_q = one_s * scale, round(one_q * scale)
        print(f"{name:44} {before_s:7.1f}s {before_q:6d} queries {all_s:7.2f}s {all_q:3d} q {before_s / all_s:6.0f}x"
              f"  ({requests} v2 requests read)")
    print(f"the same evidence per tenant both ways, every tenant with latency: {'yes' if all(checks) else 'NO'}")
    config = load_config_text(routing(ns.tenants), "bench.yaml")
    with scratch_database(state=True) as db:
        store = RolloutStore(db.admin_url, STATE_SCHEMA)
        for t in tenants:
            store.save(t, Phase.SOAKING, soak_started, Memory())
        for name, at in (("first pass", first_at), ("steady pass", steady_at)):
            before = source.queries
            started = time.perf_counter()
            report = run_once(config, store, source, None, at)
            took = time.perf_counter() - started
            actions: dict[str, int] = {}
            for _, line in report:
                actions[line.split(":")[0]] = actions.get(line.split(":")[0], 0) + 1
            print(f"decider {name} (run_once, {len(report)} tenants): {took:.1f}s, {source.queries - before} "
                  f"queries; {', '.join(f'{k} {v}' for k, v in sorted(actions.items()))}")
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())

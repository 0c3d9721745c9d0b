"""A dead worker's counter and histogram files folded into one archive per kind: totals unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry

from proxy.serving.metric_files import LockedCollector, fold_dead_worker

# A worker's metrics, as prometheus_client writes them in multiprocess mode (its own process: the
# mode is chosen when prometheus_client is imported).
WORKER = textwrap.dedent("""\
    import os, sys
    from prometheus_client import CollectorRegistry, Counter, Histogram
    registry = CollectorRegistry()
    requests = Counter("dualstack_requests", "r", ["tenant"], registry=registry)
    duration = Histogram("dualstack_request_duration_seconds", "d", ["tenant"], buckets=(0.1, 1.0), registry=registry)
    for tenant, n in (("a", int(sys.argv[1])), ("b", 1)):
        requests.labels(tenant).inc(n)
        for _ in range(n):
            duration.labels(tenant).observe(0.5)
    print(os.getpid())
""")


def worker(folder: Path, requests_a: int) -> int:
    """Run one worker to its end; its pid (its files stay, as a dead worker's do)."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    done = subprocess.run([sys.executable, "-c", WORKER, str(requests_a)], env=env, capture_output=True, text=True,
                          check=True, timeout=30)
    return int(done.stdout)


def totals(folder: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(LockedCollector(str(folder)))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in registry.collect() for s in m.samples}


def test_folding_dead_workers_keeps_every_total_in_one_file_per_kind(tmp_path: Path) -> None:
    first, second = worker(tmp_path, 3), worker(tmp_path, 4)
    before = totals(tmp_path)
    assert before[("dualstack_requests_total", (("tenant", "a"),))] == 7
    assert before[("dualstack_request_duration_seconds_bucket", (("le", "1.0"), ("tenant", "a")))] == 7

    assert fold_dead_worker(tmp_path, first) == 2  # its counter and its histogram
    assert fold_dead_worker(tmp_path, second) == 2
    assert fold_dead_worker(tmp_path, second) == 0  # already folded
    assert totals(tmp_path) == before
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["counter_archive.db", "histogram_archive.db"]

    third = worker(tmp_path, 5)  # a worker started later, then gone too
    fold_dead_worker(tmp_path, third)
    after = totals(tmp_path)
    assert after[("dualstack_requests_total", (("tenant", "a"),))] == 12
    assert after[("dualstack_requests_total", (("tenant", "b"),))] == 3
    assert after[("dualstack_request_duration_seconds_count", (("tenant", "a"),))] == 12
    assert after[("dualstack_request_duration_seconds_sum", (("tenant", "a"),))] == 6.0

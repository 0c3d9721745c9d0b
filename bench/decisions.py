"""The go/no-go decision engine on simulated soaks: the table of cases, or the calibration peaks.

    .venv/bin/python bench/decisions.py [--seeds 200] [--workers 2] [--cases edge,clean]
    .venv/bin/python bench/decisions.py --calibrate [--seeds 150] [--workers 2]

The table: for each case (controlplane/rollout/cases.py) at every traffic level (a row says where a
case is not run, or its want does not apply, and a note under the table why), how many soaks rolled
back and were promoted (with Wilson 95 % intervals), how many held at some point, and detection
times (minutes from the regression's start to the rollback: p50/p90/max). Decisions every simulated
minute, through the real decision code, at alpha = 1 % per soak. Beside the +5 pp row: the
information limit of its detection time (controlplane/rollout/delay_bound.py).

--calibrate runs soaks at the edge of each check's tolerance (errors +0.5 pp, latency x1.3 against
v1's traffic and against v1's answers to shadow copies alone, mismatches at the level the cutover
gate admits) without stopping, and prints the share of soaks in
which each check's statistic ever reached a threshold: what THRESHOLD, LATENCY_THRESHOLD and
PAGE_THRESHOLD in controlplane/rollout/calibration.py were chosen from.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import multiprocessing
import resource
import sys
import time

from controlplane.rollout.calibration import plan_for
from controlplane.rollout.cases import CASES, cells, jobs, run_job, table
from controlplane.rollout.decide import Policy
from controlplane.rollout.simulate import TRAFFIC, Scenario, run
from controlplane.shadow.matchrate import wilson

PLAN = plan_for(Policy(alpha=0.01))
EDGES = {
    "errors +0.5 pp": Scenario("edge errors", 60, error_delta=0.005, inject_at_s=0.0),
    "latency x1.3": Scenario("edge latency", 60, latency_factor=1.3, inject_at_s=0.0),
    "mismatch 1 %": Scenario("edge mismatch", 60, shadow_share=1.0, mismatch=0.01),
    "latency x1.3 pairs": Scenario("edge latency shadowed", 60, latency_factor=1.3, inject_at_s=0.0,
                                   v1_volume=0.0, shadow_share=1.0),
}


def _peaks(job: tuple[str, str, int]) -> tuple[str, str, dict[str, float]]:
    edge, level, seed = job
    peaks: dict[str, float] = {}
    scenario = EDGES[edge]
    run(dataclasses.replace(scenario, per_minute=TRAFFIC[level]), PLAN, seed, 24 * 3600.0, peaks)
    return edge, level, peaks


def calibrate(seeds: int, workers: int) -> None:
    levels = ("1/min", "1/s", "10/s", "100/s")
    work = [(edge, level, seed) for edge in EDGES for level in levels for seed in range(seeds)]
    with multiprocessing.Pool(workers) as pool:
        out = pool.map(_peaks, work, chunksize=4)
    thresholds = (9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0)
    specs = PLAN.specs
    set_at = {s.name: s.threshold for s in (specs.page, *specs.errors, specs.latency, specs.mismatch)}
    print(f"share of {seeds} soaks per cell whose statistic ever reached h (page: with its sample guard met);")
    print("'set': at the threshold calibration.py sets (alpha = 1 %), with its Wilson 95 % interval\n")
    print(f"{'edge':16} {'traffic':>7} {'check':15} " + " ".join(f"h={h:<5g}" for h in thresholds) + "   set")
    for edge in EDGES:
        for level in levels:
            rows = [p for e, lv, p in out if e == edge and lv == level]
            for name in sorted({k for p in rows for k in p}):
                shares = [sum(p.get(name, 0.0) >= h for p in rows) / len(rows) for h in thresholds]
                hit = sum(p.get(name, 0.0) >= set_at[name] for p in rows)
                print(f"{edge:16} {level:>7} {name:15} " + " ".join(f"{s:7.1%}" for s in shares)
                      + f"  {hit / len(rows):6.1%}")
            anyone = sum(any(p.get(name, 0.0) >= h for name, h in set_at.items()) for p in rows)
            low, high = wilson(anyone, len(rows))
            print(f"{edge:16} {level:>7} {'any check':15} " + " " * 8 * len(thresholds)
                  + f"  {anyone / len(rows):6.1%} [{low:.1%}-{high:.1%}]")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cases", help="comma-separated case keys: " + ", ".join(c.key for c in CASES))
    parser.add_argument("--calibrate", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    if args.calibrate:
        calibrate(args.seeds, args.workers)
    else:
        chosen = [c for c in CASES if args.cases is None or c.key in args.cases.split(",")]
        work = jobs(chosen, args.seeds)
        with multiprocessing.Pool(args.workers) as pool:
            results = pool.map(functools.partial(run_job, PLAN), work, chunksize=8)
        print(f"{args.seeds} seeded soaks per cell; one decision per simulated minute; alpha = 1 % per soak\n")
        print("\n".join(table(cells(chosen, results))))
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\n{time.monotonic() - started:.0f} s wall on {args.workers} worker(s), {cpu.ru_utime + cpu.ru_stime:.0f} s "
          "CPU in them (on a shared machine the wall time is the CPU time over the share of cores it got)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The cases the decision engine is judged on, each at every traffic level, and their measured table.

A case runs at every level of TRAFFIC unless it is defined by its level (`not_run` says why, and the
table has a row saying so for each other level); its want may apply at some levels only
(`judged_at`; `not_judged` says why: the others are measured all the same).

Shared by `dualstack rollout simulate` (few seeds) and bench/decisions.py (>= 200 seeds per cell).
Rates come with Wilson 95 % intervals; detection times are minutes from the regression's start to the
decision that rolled back (decisions every minute), over the soaks that rolled back.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from controlplane.rollout.calibration import ALPHA, Plan
from controlplane.rollout.decide import Action, Policy
from controlplane.rollout.delay_bound import DelayBound, cusum_delay_bound
from controlplane.rollout.simulate import TRAFFIC, Result, Scenario, run
from controlplane.shadow.matchrate import wilson

H: Final = 3600.0


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    want: str
    scenario: Scenario
    levels: tuple[str, ...] = tuple(TRAFFIC)  # the traffic levels it runs at (keys of TRAFFIC)
    horizon_s: float | None = None  # None: the soak and 6 h more
    goal: Callable[[Cell], bool] | None = None
    limit: bool = False  # print the information limit of its detection time beside its rows (delay_bound.py)
    judged_at: tuple[str, ...] | None = None  # the levels its want applies at (None: every level it runs at)
    not_run: str = ""  # why it runs at no other level: a row says so for each (empty: no such rows)
    not_judged: str = ""  # why its want does not apply outside judged_at (measured there all the same)

    def judged(self, level: str) -> bool:
        return self.judged_at is None or level in self.judged_at


@dataclass(frozen=True)
class Cell:
    case: Case
    level: str
    results: tuple[Result, ...]

    @property
    def n(self) -> int:
        return len(self.results)

    def count(self, action: Action) -> int:
        return sum(r.action is action for r in self.results)

    def share(self, action: Action) -> float:
        return self.count(action) / self.n if self.n else 0.0

    def detection_min(self) -> list[float]:
        start = self.case.scenario.inject_at_s or 0.0
        return sorted((r.at_s - start) / 60 for r in self.results if r.action is Action.ROLLBACK and r.at_s)

    def held(self) -> int:
        return sum(r.held for r in self.results)


def _percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def _fast(cell: Cell) -> bool:
    times = cell.detection_min()
    return cell.share(Action.ROLLBACK) == 1.0 and bool(times) and _percentile(times, 0.9) <= 5


def _never_promoted(cell: Cell) -> bool:
    return cell.count(Action.PROMOTE) == 0


def _caught(cell: Cell) -> bool:
    return cell.share(Action.ROLLBACK) >= 0.95


def _caught_never_promoted(cell: Cell) -> bool:
    return cell.count(Action.PROMOTE) == 0 and cell.count(Action.ROLLBACK) > 0


def _no_rollback(cell: Cell) -> bool:
    return cell.count(Action.ROLLBACK) == 0


def _rare_rollback(cell: Cell) -> bool:
    return cell.share(Action.ROLLBACK) <= 0.01


def _held_not_promoted(cell: Cell) -> bool:
    return cell.count(Action.PROMOTE) == 0 and cell.held() == cell.n


FROM_1_PER_S: Final = ("1/s", "10/s", "100/s")
FROM_10_PER_MIN: Final = ("10/min", "1/s", "10/s", "100/s")
P99_BELOW_1_PER_S: Final = ("the goal is set from 1 req/s; below it the 4 h from the regression to the promotion hold "
                            "about 240 requests (2,400 at 10 req/min), about 2 (24) of them slower than v1's p99 "
                            "bound at v1's latency: measured, not judged")
FIVE_POINTS_AT_1_PER_MIN: Final = ("at 1 req/min the case's 2 h after the regression hold about 120 requests, while "
                                   "even a CUSUM told the exact alternative needs 4.0 h on average, 6.7 h at p90 (the "
                                   "information limit, delay_bound.py): measured, not judged")

CASES: Final = (
    Case("errors+5pp", "v2 errors +5 pp (v1 0.5 %)", "p90 <= 5 min",
         Scenario("errors+5pp", 60, error_delta=0.05, inject_at_s=H + 30, mean_at_inject=True), ("1/s",),
         horizon_s=3 * H, goal=_fast, limit=True,
         not_run="the case is defined by its traffic (the goal is set at 1 req/s, beside its information limit); "
                 "+5 pp at every level: the rows with v1 idle and with reads shadowed"),
    Case("late+1pp", "+1 pp from hour 23", "never promoted",
         Scenario("late+1pp", 60, error_delta=0.01, inject_at_s=23 * H), goal=_never_promoted),
    Case("p99x1.5", "p99 x1.5 from hour 20", ">= 95 % rolled back",
         Scenario("p99x1.5", 60, latency_factor=1.5, inject_at_s=20 * H), goal=_caught, judged_at=FROM_1_PER_S,
         not_judged=P99_BELOW_1_PER_S),
    Case("p99x1.5-shadow", "p99 x1.5 from hour 20, v1 idle, shadowed", ">= 95 % rolled back",
         Scenario("p99x1.5-shadow", 60, latency_factor=1.5, inject_at_s=20 * H, v1_volume=0.0, shadow_share=1.0),
         goal=_caught, judged_at=FROM_1_PER_S, not_judged=P99_BELOW_1_PER_S),
    Case("webhooks", "every webhook failing on v2", "never promoted; rolled back",
         Scenario("webhooks", 60, error_delta=1.0, error_routes=("webhook",), inject_at_s=0.0),
         goal=_caught_never_promoted),
    Case("outage", "shared 2-min outage, 5 % on both", "0 rollbacks",
         Scenario("outage", 60, outages=((2 * H + 17, 120.0, 0.05),), random_outages_per_day=0.0),
         horizon_s=4 * H, goal=_no_rollback),
    Case("outage-v1idle", "shared outage, v1 serves no one else", "0 rollbacks",
         Scenario("outage-v1idle", 60, outages=((2 * H + 17, 120.0, 0.05),), random_outages_per_day=0.0,
                  v1_volume=0.0), horizon_s=4 * H, goal=_no_rollback),
    Case("outage-v1tenth", "shared outage, v1 at 10 % of v2's traffic", "0 rollbacks",
         Scenario("outage-v1tenth", 60, outages=((2 * H + 17, 120.0, 0.05),), random_outages_per_day=0.0,
                  v1_volume=0.1), horizon_s=4 * H, goal=_no_rollback),
    Case("outage-shadow", "shared outage, v1 idle, reads shadowed", "0 rollbacks",
         Scenario("outage-shadow", 60, outages=((2 * H + 17, 120.0, 0.05),), random_outages_per_day=0.0,
                  v1_volume=0.0, shadow_share=1.0), horizon_s=4 * H, goal=_no_rollback),
    Case("errors+5pp-shadow", "v2 errors +5 pp, v1 idle, reads shadowed", ">= 95 % rolled back",
         Scenario("errors+5pp-shadow", 60, error_delta=0.05, inject_at_s=H + 30, mean_at_inject=True,
                  v1_volume=0.0, shadow_share=1.0), horizon_s=3 * H, goal=_caught, judged_at=FROM_10_PER_MIN,
         not_judged=FIVE_POINTS_AT_1_PER_MIN),
    Case("clean-v1idle", "clean, v1 serves no one else", "<= 1 % rolled back",
         Scenario("clean-v1idle", 60, v1_volume=0.0), goal=_rare_rollback),
    Case("clean-shadow", "clean, v1 idle, reads shadowed", "<= 1 % rolled back",
         Scenario("clean-shadow", 60, v1_volume=0.0, shadow_share=1.0), goal=_rare_rollback),
    Case("errors+5pp-v1idle", "v2 errors +5 pp, v1 serves no one else", ">= 95 % rolled back",
         Scenario("errors+5pp-v1idle", 60, error_delta=0.05, inject_at_s=H + 30, mean_at_inject=True,
                  v1_volume=0.0), horizon_s=3 * H, goal=_caught, judged_at=FROM_10_PER_MIN,
         not_judged=FIVE_POINTS_AT_1_PER_MIN),
    Case("edge", "v2 = v1 + 0.5 pp (tolerance edge)", "<= 1 % rolled back",
         Scenario("edge", 60, error_delta=0.005, inject_at_s=0.0), goal=_rare_rollback),
    Case("mismatch", "shadow mismatch 0.8 % (the gate admits)", "0 rollbacks",
         Scenario("mismatch", 60, shadow_share=1.0, mismatch=0.008), goal=_no_rollback),
    Case("clean", "clean, realistic latency", "<= 1 % rolled back",
         Scenario("clean", 60), goal=_rare_rollback),
    Case("stops", "traffic stops at hour 6", "held, never promoted",
         Scenario("stops", 60, stop_at_s=6 * H), goal=_held_not_promoted),
)


def jobs(cases: Iterable[Case], seeds: int) -> list[tuple[str, str, int]]:
    return [(case.key, level, seed) for case in cases for level in case.levels for seed in range(seeds)]


def run_job(plan: Plan, job: tuple[str, str, int]) -> tuple[str, str, Result]:
    key, level, seed = job
    case = next(c for c in CASES if c.key == key)
    scenario = dataclasses.replace(case.scenario, per_minute=TRAFFIC[level])
    return key, level, run(scenario, plan, seed, case.horizon_s)


def cells(cases: Iterable[Case], results: Iterable[tuple[str, str, Result]]) -> list[Cell]:
    by: dict[tuple[str, str], list[Result]] = {}
    for key, level, result in results:
        by.setdefault((key, level), []).append(result)
    return [Cell(case, level, tuple(by.get((case.key, level), ()))) for case in cases for level in case.levels]


def _rate(cell: Cell, action: Action) -> str:
    low, high = wilson(cell.count(action), cell.n)
    return f"{cell.share(action):6.1%} [{low:.1%}-{high:.1%}]"


def table(rows: list[Cell]) -> list[str]:
    """One row per cell; then, per case, a row for each traffic level it does not run at (when it says
    why); then notes: why a case's want does not apply at some levels, or why it runs at no others."""
    lines = [f"{'case':42} {'traffic':>7} {'n':>4}  {'rolled back [95% CI]':>22}  {'promoted [95% CI]':>22} "
             f"{'held':>5}  {'detection p50/p90/max':>21}  {'want':28} ok"]
    notes: list[str] = []
    for i, cell in enumerate(rows):
        case = cell.case
        times = cell.detection_min()
        detection = (f"{_percentile(times, 0.5):.0f}/{_percentile(times, 0.9):.0f}/{times[-1]:.0f} min"
                     if times else "-")
        if case.judged(cell.level):
            want, ok = case.want, "yes" if case.goal is None or case.goal(cell) else "NO"
        else:
            want, ok = "not judged here: note below", "-"
        lines.append(f"{case.title:42} {cell.level:>7} {cell.n:>4}  {_rate(cell, Action.ROLLBACK):>22}  "
                     f"{_rate(cell, Action.PROMOTE):>22} {cell.held():>5}  {detection:>21}  {want:28} {ok}")
        if case.limit:
            lines.append(f"  ^ {limit_of(case, cell.level).text()}")
        if i + 1 < len(rows) and rows[i + 1].case is case:
            continue  # the case's last row is next
        skipped = [level for level in TRAFFIC if level not in case.levels] if case.not_run else []
        lines.extend(f"{case.title:42} {level:>7}  not run: note below" for level in skipped)
        if skipped:
            notes.append(f"{case.title}: not run at {', '.join(skipped)}: {case.not_run}")
        unjudged = [c.level for c in rows if c.case is case and not case.judged(c.level)]
        if unjudged and case.not_judged:
            notes.append(f"{case.title} at {', '.join(unjudged)}: {case.not_judged}")
    if notes:
        lines.extend(["", "notes:", *(f"- {note}" for note in notes)])
    return lines


def limit_of(case: Case, level: str) -> DelayBound:
    """The detection time no test can beat for this case at <= ALPHA false rollbacks per soak of
    minute-by-minute looks: v1's rate + the declared tolerance against v1's rate + the regression."""
    s = case.scenario
    looks = round(Policy().soak_s / 60)
    return cusum_delay_bound(s.base_error, Policy().error_floor_abs, s.error_delta, TRAFFIC[level], ALPHA, looks)

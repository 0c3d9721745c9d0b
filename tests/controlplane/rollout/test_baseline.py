"""Which v1 the soak compares v2 with: v1's traffic over the same minutes, v1's answers to the tenant's
shadow copies, or, with neither, nothing concurrent, and then a failure is not blamed on v2 quickly."""

from __future__ import annotations

import json

from controlplane.config.latency_buckets import DURATION_BUCKETS
from controlplane.config.model import CutoverPolicy
from controlplane.rollout.calibration import Plan, plan_for
from controlplane.rollout.checks import THIN_BASELINE_SLICES, UNBASELINED_SLICES
from controlplane.rollout.decide import Action, Hold, Policy, decide
from controlplane.rollout.evidence import History, Latency, Slice
from controlplane.rollout.soak import Soak
from controlplane.shadow.matchrate import MatchRate

START = 1_767_225_600.0
PLAN = plan_for(Policy(alpha=0.01))
HISTORY = History((100_000, 0, 0), (500, 0, 0), 86400.0)  # v1 at 0.5 % before the soak


def reads(i: int, v2: tuple[int, int], shadow: tuple[int, int] = (0, 0), v1: tuple[int, int] = (0, 0),
          compared: MatchRate | None = None) -> Slice:
    """Minute i of reads only: v2's (requests, errors), v1's answers to shadow copies, v1's own traffic."""
    return Slice(START + 60 * i, 60.0, (v2[0], 0, 0), (v2[1], 0, 0), (v1[0], 0, 0), (v1[1], 0, 0),
                 shadow=compared or MatchRate(), v1_shadow=shadow)


def fold(slices: list[Slice], plan: Plan = PLAN) -> Soak:
    soak = Soak(plan.specs, START)
    soak.start(HISTORY)
    for s in slices:
        soak.fold(s)
    return soak


def test_v1s_answers_to_shadow_copies_are_the_baseline_and_a_failure_they_share_holds() -> None:
    clean = [reads(i, (600, 3), shadow=(600, 3)) for i in range(1, 121)]
    outage = [reads(i, (600, 30), shadow=(600, 31)) for i in range(121, 124)]  # 5 % on both for 3 minutes
    soak = fold(clean + outage)
    decision = decide(soak, PLAN, START + 60 * 123)
    assert (decision.action, decision.hold) == (Action.HOLD, Hold.SHARED)
    read = next(c for c in decision.checks if c.name == "errors:read")
    assert read.inputs["baseline"].startswith("v1 over the same minutes")
    assert "73800 of them v1's answers to shadow copies" in read.inputs["baseline"]
    again = Soak.from_json(PLAN.specs, json.loads(json.dumps(soak.to_json())))
    assert again is not None and again.v1_shadow_answers == soak.v1_shadow_answers == 73800


def test_without_any_concurrent_v1_a_short_failure_holds_and_says_why() -> None:
    clean = [reads(i, (600, 3)) for i in range(1, 121)]
    burst = [reads(i, (600, 30)) for i in range(121, 125)]  # 5 % for four minutes: shared or not, nobody can tell
    decision = decide(fold(clean + burst), PLAN, START + 60 * 124)
    assert (decision.action, decision.hold) == (Action.HOLD, Hold.NO_BASELINE)
    assert "no concurrent baseline" in decision.reasons[0] and "cannot be ruled out" in decision.reasons[0]
    read = next(c for c in decision.checks if c.name == "errors:read")
    assert "no concurrent baseline" in read.inputs["baseline"]
    assert f"at most 1/{UNBASELINED_SLICES} of the threshold" in read.inputs["baseline"]


def test_without_any_concurrent_v1_a_sustained_failure_still_rolls_back() -> None:
    clean = [reads(i, (600, 3)) for i in range(1, 121)]
    sustained = [reads(i, (600, 30)) for i in range(121, 121 + 2 * UNBASELINED_SLICES)]
    soak = fold(clean)
    rolled_at = None
    for s in sustained:
        soak.fold(s)
        if decide(soak, PLAN, s.end_s, detail=False).action is Action.ROLLBACK:
            rolled_at = round((s.end_s - START) / 60) - 120
            break
    assert rolled_at is not None and rolled_at >= UNBASELINED_SLICES // 2


def test_the_same_failure_against_concurrent_v1_rolls_back_within_minutes() -> None:
    clean = [reads(i, (600, 3), v1=(600, 3)) for i in range(1, 121)]
    soak = fold(clean)
    for minutes in range(1, 4):
        soak.fold(reads(120 + minutes, (600, 30), v1=(600, 3)))
        if decide(soak, PLAN, START + 60 * (120 + minutes)).action is Action.ROLLBACK:
            break
    assert decide(soak, PLAN, START + 60 * (120 + minutes)).action is Action.ROLLBACK and minutes <= 2


def test_mismatches_roll_back_only_where_the_cutover_gate_would_refuse() -> None:
    cutover = CutoverPolicy(min_match_rate=0.99, min_comparisons=500)
    plan = plan_for(Policy(alpha=0.01), cutover)
    assert plan.specs.mismatch.min_samples == 500 and plan.specs.mismatch.gate_window_s == cutover.shadow_window_s
    # 20 % mismatches, but only 400 comparisons in the gate's window: the gate would not judge yet.
    few = [reads(i, (600, 3), v1=(600, 3), compared=MatchRate(8, 2)) for i in range(1, 41)]
    soak = fold(few, plan)
    assert max(soak.mismatch.cusum) >= plan.specs.mismatch.threshold and not soak.mismatch.failed()
    assert decide(soak, plan, START + 60 * 40).action is not Action.ROLLBACK
    more = [reads(i, (600, 3), v1=(600, 3), compared=MatchRate(8, 2)) for i in range(41, 61)]
    for s in more:
        soak.fold(s)
    assert soak.mismatch.gate_refuses() and decide(soak, plan, START + 60 * 60).action is Action.ROLLBACK


def test_against_v1s_shadow_answers_alone_a_failure_rolls_back_on_its_fourth_minute_not_its_third() -> None:
    # v1 answers only the copies, as many as v2's reads: a shared outage can show on it as faintly as
    # chance allows, and one lasts up to three slices; v1's own traffic beside it rolls back within two.
    soak = fold([reads(i, (600, 3), shadow=(600, 3)) for i in range(1, 121)])
    for minutes in range(1, THIN_BASELINE_SLICES + 2):
        soak.fold(reads(120 + minutes, (600, 30), shadow=(600, 3)))
        if decide(soak, PLAN, START + 60 * (120 + minutes), detail=False).action is Action.ROLLBACK:
            break
    assert minutes == THIN_BASELINE_SLICES
    read = next(c for c in decide(soak, PLAN, START + 60 * (120 + minutes)).checks if c.name == "errors:read")
    assert f"each counts at most 1/{THIN_BASELINE_SLICES} of the threshold" in read.inputs["baseline"]


def paired(i: int, v2_slow: int, v1_slow: int = 6) -> Slice:
    """Minute i: v1 serves nobody else; 600 mirrored reads, v2's and v1's latency on them (`*_slow` of
    each slower than 0.25 s, a tenth of those slower than 1 s)."""
    def above(slow: int) -> tuple[int, ...]:
        return tuple(600 if b < 0.05 else 300 if b < 0.25 else slow if b < 1.0 else slow // 10
                     for b in DURATION_BUCKETS)

    return Slice(START + 60 * i, 60.0, (600, 0, 0), (3, 0, 0), v1_shadow=(600, 3),
                 shadow=MatchRate(600, 0), shadow_latency=Latency(DURATION_BUCKETS, 600, above(v2_slow), 600,
                                                                   above(v1_slow)))


def test_with_v1_idle_its_answers_to_the_copies_are_the_latency_baseline() -> None:
    day = 24 * 60
    soak = fold([paired(i, 6) for i in range(1, day + 1)])
    assert soak.tail.index is not None and 0 < soak.latency_paired_slices == soak.latency.slices < day
    decision = decide(soak, PLAN, START + 60 * day)
    assert decision.action is Action.PROMOTE  # without the pairs: no latency to compare, held for ever
    latency = next(c for c in decision.checks if c.name == "latency")
    assert "v1's answers to the shadow copies against v2's answers to the same mirrored reads" in \
        latency.inputs["baseline"]
    assert f"in 0 of {soak.latency.slices} slices v1's own traffic" in latency.inputs["baseline"]
    again = Soak.from_json(PLAN.specs, json.loads(json.dumps(soak.to_json())))
    assert again is not None and again.latency_paired_slices == soak.latency_paired_slices
    slower = fold([paired(i, 6) for i in range(1, 121)] + [paired(i, 30) for i in range(121, 181)])
    assert decide(slower, PLAN, START + 60 * 180).action is Action.ROLLBACK  # v2 five times as often slow

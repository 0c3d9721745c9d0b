"""The decision engine on hand-made slices: what each rule does, and that it says why."""

from __future__ import annotations

import json
import math

import pytest

from controlplane.config.model import CutoverPolicy
from controlplane.rollout.calibration import plan_for
from controlplane.rollout.decide import (
    Action,
    Hold,
    Outcome,
    Policy,
    Verdict,
    decide,
    provider_error,
    without_way_back,
)
from controlplane.rollout.evidence import History, Latency, Slice
from controlplane.rollout.soak import Soak
from controlplane.rollout.stats import bernoulli_llr, needed_samples, survival_at
from controlplane.shadow.matchrate import MatchRate

START = 1_767_225_600.0
PLAN = plan_for(Policy(alpha=0.01))
BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0)


def minute(i: int, v2: tuple[int, int] = (600, 3), v1: tuple[int, int] = (600, 3), *, route: int = 0,
           slow: tuple[int, int] = (12, 12), shadow: MatchRate | None = None) -> Slice:
    """Slice i (ending i minutes into the soak): requests and errors on one route; `slow` is how many of
    v2's and v1's requests exceeded 0.25 s."""
    def on(counts: tuple[int, int]) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        n, e = [0, 0, 0], [0, 0, 0]
        n[route], e[route] = counts
        return (n[0], n[1], n[2]), (e[0], e[1], e[2])

    (n2, e2), (n1, e1) = on(v2), on(v1)
    latency = Latency(BOUNDS, v2[0], (v2[0] // 2, v2[0] // 5, slow[0], slow[0] // 4, 0),
                      v1[0], (v1[0] // 2, v1[0] // 5, slow[1], slow[1] // 4, 0))
    return Slice(START + 60 * i, 60.0, n2, e2, n1, e1, latency, shadow or MatchRate())


def soak_of(slices: list[Slice], history: History | None = None) -> Soak:
    soak = Soak(PLAN.specs, START)
    soak.start(history)
    for s in slices:
        soak.fold(s)
    return soak


def at(i: int) -> float:
    return START + 60 * i


def test_a_provider_error_holds_and_never_decides() -> None:
    decision = provider_error("Prometheus: connection refused")
    assert (decision.action, decision.verdict, decision.hold) == (Action.HOLD, Verdict.ERROR, Hold.PROVIDER)
    assert "never promote or roll back blind" in decision.reasons[0]


def test_a_clean_soak_promotes_on_recent_evidence_and_says_which_baseline() -> None:
    day = 24 * 60
    soak = soak_of([minute(i) for i in range(1, day + 1)])
    decision = decide(soak, PLAN, at(day))
    assert (decision.action, decision.verdict) == (Action.PROMOTE, Verdict.GO)
    assert "every check passes on the last 6 h on its own" in decision.reasons[0]
    read = next(c for c in decision.checks if c.name == "errors:read")
    assert read.outcome is Outcome.PASS and "healthy on its own over the last 1 h" in read.reason
    assert read.inputs["baseline"].startswith("v1 over the same minutes (1440 of 1440 slices had v1 traffic")
    assert "effect sizes" in read.test and "calibrated by simulation" in read.threshold


def test_clean_hours_bank_no_credit_a_late_regression_holds_the_promotion() -> None:
    # 1 req/s, v1 at 0.56 %; v2 the same for 23 h, then 1.7 % for the last hour: too little, too late for a
    # rollback, and no promotion on the strength of the clean hours.
    day = 24 * 60
    slices = [minute(i, v2=(60, int(i % 3 == 0)), v1=(60, int(i % 3 == 1))) for i in range(1, day - 59)]
    slices += [minute(i, v2=(60, 1), v1=(60, int(i % 3 == 1))) for i in range(day - 59, day + 1)]
    decision = decide(soak_of(slices), PLAN, at(day))
    assert (decision.action, decision.hold) == (Action.HOLD, Hold.UNPROVEN)
    assert any(r.startswith("window over, but errors:read:") and "last 1 h" in r for r in decision.reasons)


def test_a_failure_both_backends_share_is_not_counted_against_v2_and_holds() -> None:
    slices = [minute(i) for i in range(1, 121)] + [minute(i, v2=(600, 30), v1=(600, 31)) for i in (121, 122)]
    decision = decide(soak_of(slices), PLAN, at(122))
    assert (decision.action, decision.hold) == (Action.HOLD, Hold.SHARED)
    assert "v1 and v2 failed together" in decision.reasons[0]
    read = next(c for c in decision.checks if c.name == "errors:read")
    assert read.inputs["statistic"] == 0.0 and "2 shared-failure slices left out" in read.inputs["baseline"]
    # The same v2 failure with v1 healthy is v2's own, and severe.
    alone = [minute(i) for i in range(1, 121)] + [minute(i, v2=(600, 30)) for i in (121, 122, 123)]
    decision = decide(soak_of(alone), PLAN, at(123))
    assert decision.action is Action.ROLLBACK and decision.reasons[0].startswith("severe harm: v2's errors")


def test_the_page_rule_needs_its_minimum_sample() -> None:
    # Four errors in a quiet stretch: a large share of few requests, not a page.
    quiet = [minute(i, v2=(3, 0), v1=(3, 0)) for i in range(1, 61)] + [minute(61, v2=(4, 4), v1=(3, 0))]
    decision = decide(soak_of(quiet), PLAN, at(61))
    assert decision.action is Action.CONTINUE
    page = next(c for c in decision.checks if c.name == "page")
    assert page.outcome is not Outcome.FAIL and page.severe
    if page.outcome is Outcome.INSUFFICIENT:  # its test may be at its threshold: the sample guard is what holds
        assert "the page rule's minimum sample and excess" in page.reason


def test_the_tolerance_is_absolute_so_plus_one_point_is_not_hidden_when_v1_is_at_two_percent() -> None:
    slices = [minute(i, v2=(600, 18), v1=(600, 12)) for i in range(1, 241)]  # v1 2 %, v2 3 %
    decision = decide(soak_of(slices), PLAN, at(240))
    assert decision.action is Action.ROLLBACK
    assert "errors on read requests have credibly risen above the tolerable 2." in decision.reasons[0]


def test_a_rollback_v1_cannot_take_is_a_hold_that_keeps_its_evidence() -> None:
    slices = [minute(i, v2=(600, 18), v1=(600, 12)) for i in range(1, 241)]
    rollback = decide(soak_of(slices), PLAN, at(240))
    refusal = "v1 does not hold fresh's orders (upstreams.v1.tenants: legacy)"
    held = without_way_back(rollback, refusal)
    assert (held.action, held.verdict, held.hold) == (Action.HOLD, Verdict.NO_GO, Hold.NO_WAY_BACK)
    assert held.reasons[0].startswith("holding: v1 does not hold this tenant, so it stays on v2 although its "
                                      "soak fails (evidence of harm: v2's errors on read requests")
    assert held.reasons[1] == refusal and held.checks == rollback.checks
    assert without_way_back(rollback, None) is rollback  # v1 holds it: the rollback stands
    calm = decide(soak_of([minute(i) for i in range(1, 61)]), PLAN, at(60))
    assert without_way_back(calm, refusal) is calm  # only a rollback is changed


def test_per_route_checks_judge_notifications_on_their_own() -> None:
    # Reads are clean and plentiful; every notification (a few an hour) fails on v2.
    slices = []
    for i in range(1, 181):
        slices.append(minute(i))
        if i % 10 == 0:
            slices.append(minute(i, v2=(1, 1), v1=(1, 0), route=2))
    soak = Soak(PLAN.specs, START)
    soak.start(None)
    for s in slices:
        # two slices for the same minute: the second is folded as a later interval
        soak.fold(s if s.v2_requests[2] == 0 else Slice(s.end_s + 1, s.length_s, s.v2_requests, s.v2_errors,
                                                         s.v1_requests, s.v1_errors))
    decision = decide(soak, PLAN, at(180) + 1)
    assert decision.action is Action.ROLLBACK
    assert "errors on webhook requests" in decision.reasons[0]


def test_latency_is_the_share_slower_than_v1s_p99_bound() -> None:
    slices = [minute(i) for i in range(1, 61)] + [minute(i, slow=(60, 12)) for i in range(61, 121)]
    decision = decide(soak_of(slices), PLAN, at(120))
    assert decision.action is Action.ROLLBACK
    latency = next(c for c in decision.checks if c.name == "latency")
    assert latency.outcome is Outcome.FAIL and latency.inputs["bound_s"] == 0.25
    assert "slow requests have credibly risen" in latency.reason


def test_mismatches_the_cutover_gate_admits_are_not_rolled_back_but_more_are() -> None:
    assert plan_for(Policy(), CutoverPolicy(min_match_rate=0.99)).specs.mismatch.tolerance == pytest.approx(0.01)
    admitted = [minute(i, shadow=MatchRate(992, 8)) for i in range(1, 24 * 60 + 1)]  # 0.8 %
    decision = decide(soak_of(admitted), PLAN, at(24 * 60))
    assert decision.action is Action.PROMOTE
    worse = [minute(i, shadow=MatchRate(970, 30)) for i in range(1, 121)]  # 3 %
    decision = decide(soak_of(worse), PLAN, at(120))
    assert decision.action is Action.ROLLBACK and "mismatches have credibly risen" in decision.reasons[0]


def test_no_traffic_is_never_a_pass_the_soak_holds() -> None:
    slices = [minute(i) for i in range(1, 361)] + [minute(i, v2=(0, 0)) for i in range(361, 24 * 60 + 1)]
    decision = decide(soak_of(slices), PLAN, at(24 * 60))
    assert (decision.action, decision.hold) == (Action.HOLD, Hold.STALE)
    assert "v2 has served no request since 2026-01-01 06:00 UTC" in decision.reasons[0]
    behind = decide(soak_of([minute(i) for i in range(1, 61)]), PLAN, at(120))
    assert (behind.action, behind.hold) == (Action.HOLD, Hold.BEHIND)


def test_without_concurrent_v1_the_history_is_the_baseline_and_says_so() -> None:
    history = History((100_000, 0, 0), (500, 0, 0), 86400.0)
    soak = soak_of([minute(i, v1=(0, 0)) for i in range(1, 61)], history)
    read = next(c for c in decide(soak, PLAN, at(60)).checks if c.name == "errors:read")
    assert read.inputs["baseline"].startswith("v1's own history before the soak")
    assert read.inputs["v1_rate"] == 0.005


def test_the_soak_survives_a_round_trip_through_json() -> None:
    slices = [minute(i, v2=(600, 6)) for i in range(1, 200)]
    soak = soak_of(slices)
    again = Soak.from_json(PLAN.specs, json.loads(json.dumps(soak.to_json())))
    assert again is not None
    assert decide(again, PLAN, at(199)) == decide(soak, PLAN, at(199))
    assert Soak.from_json(PLAN.specs, {"error_cusum": 1.0}) is None  # an older engine's memory: start again


def test_statistics() -> None:
    assert bernoulli_llr(0, 0, 0.01, 0.02) == 0.0
    assert bernoulli_llr(20, 1000, 0.01, 0.02) > 0 > bernoulli_llr(5, 1000, 0.01, 0.02)
    assert needed_samples(0.005, 0.0125) < needed_samples(0.005, 0.01) < 10_000
    # Log-linear between bounds: halfway (in log time) between 10 % and 1 % is about 3.2 %.
    assert math.isclose(survival_at((0.1, 1.0), (100, 10), 1000, math.sqrt(0.1)), 0.1 ** 1.5, rel_tol=1e-9)

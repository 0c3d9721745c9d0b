"""One match rate: the report, the cutover gate and the decider read the same counts the same way."""

from __future__ import annotations

import math

import pytest

from controlplane.config.model import CutoverPolicy
from controlplane.cutover.preflight import shadow_gate
from controlplane.rollout.calibration import plan_for
from controlplane.rollout.decide import Policy
from controlplane.rollout.evidence import Slice
from controlplane.rollout.soak import Soak
from controlplane.shadow.matchrate import MatchRate, wilson
from controlplane.shadow.report import endpoint_row


def test_wilson_interval() -> None:
    low, high = wilson(180, 200)
    assert 0.85 < low < 0.9 < high < 0.94
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(5, 5)[1] == 1.0


def test_noise_is_neither_a_match_nor_a_mismatch() -> None:
    rate = MatchRate(matches=155, mismatches=20, noise=26)
    assert (rate.comparisons, rate.judged) == (201, 175)
    assert rate.rate == 155 / 175 and rate.interval == wilson(155, 175)
    assert MatchRate(noise=10).rate == 0.0 and MatchRate(noise=10).interval == (0.0, 1.0)  # no data is no pass
    assert MatchRate.total([MatchRate(1, 2, 3), MatchRate(10, 20, 30)]) == MatchRate(11, 22, 33)


@pytest.mark.parametrize("rate", [MatchRate(matches=155, mismatches=20, noise=26), MatchRate(990, 10, 500),
                                  MatchRate(7, 0, 3)])
def test_the_report_the_gate_and_the_decider_agree_on_the_same_counts(rate: MatchRate) -> None:
    row = endpoint_row("GET /orders/{id}/status", rate)
    shown = row.match_rate
    assert (row.ci_low, row.ci_high) == rate.interval and row.comparisons == rate.comparisons

    # The gate passes exactly from the rate the report shows, over the comparisons it counts.
    at = CutoverPolicy(min_match_rate=shown, min_comparisons=rate.judged)
    assert shadow_gate(rate, at).ok
    assert f"{shown:.2%} matched" in shadow_gate(rate, at).detail
    assert not shadow_gate(rate, CutoverPolicy(min_match_rate=math.nextafter(shown, math.inf), min_comparisons=0)).ok
    assert not shadow_gate(rate, CutoverPolicy(min_match_rate=0.0, min_comparisons=rate.judged + 1)).ok

    # The decider tests the complement of the same rate, over the same comparisons, and promotes on the
    # gate's own rule at the gate's own level.
    plan = plan_for(Policy(min_comparisons=1), CutoverPolicy(min_match_rate=shown, min_comparisons=rate.judged))
    soak = Soak(plan.specs, 0.0)
    soak.fold(Slice(60.0, 60.0, (0, 0, 0), (0, 0, 0), shadow=rate))
    check = soak.mismatch
    assert (check.v2_events, check.v2_total) == (rate.mismatches, rate.judged)
    window = check.window(60.0, 3600.0)
    gate = shadow_gate(rate, CutoverPolicy(min_match_rate=1 - check.spec.tolerance, min_comparisons=rate.judged))
    assert check.recent_pass(window) == gate.ok

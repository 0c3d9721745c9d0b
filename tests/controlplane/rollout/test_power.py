"""Promotion's power floor: a window that had to reach back hours cannot promote on a quiet last hour."""

from __future__ import annotations

import dataclasses
import math

import pytest

from controlplane.commands.rollout import _check_story
from controlplane.rollout.decide import Action, Hold, Outcome, decide
from controlplane.rollout.evidence import Slice
from controlplane.rollout.power import needed, recent_power
from controlplane.rollout.stats import binomial_sf
from controlplane.rollout.windows import Window
from tests.controlplane.rollout.test_decide import PLAN, at, minute, soak_of

DAY = 24 * 60


def clean_day(per_minute: int) -> list[Slice]:
    """v1 and v2 both at 0.5 % on reads, `per_minute` requests a minute each, for 24 h; v2 no slower
    than v1 (latency passes, whatever the traffic)."""
    every = 200 // per_minute  # one error in 200 requests
    return [minute(i, v2=(per_minute, int(i % every == 0)), v1=(per_minute, int(i % every == every // 2)),
                   slow=(0, 1)) for i in range(1, DAY + 1)]


def test_a_clean_soak_at_ten_requests_a_minute_holds_and_says_how_much_traffic_it_needs() -> None:
    # 600 reads in the last hour cannot pass alone, so the window judged reaches back hours, where a
    # regression to v1 + 1 pp over the last hour alone would pass unseen: hold, and say so.
    soak = soak_of(clean_day(10))
    assert decide(soak, dataclasses.replace(PLAN, power=0.0), at(DAY)).action is Action.PROMOTE  # without the floor
    decision = decide(soak, PLAN, at(DAY))
    assert (decision.action, decision.hold) == (Action.HOLD, Hold.UNPROVEN)
    assert decide(soak, PLAN, at(DAY), detail=False).action is Action.HOLD
    read = next(c for c in decision.checks if c.name == "errors:read")
    assert read.outcome is Outcome.INSUFFICIENT
    assert read.reason.startswith("too little recent traffic to rule out a regression of +1 pp over v1")
    power = read.inputs["recent_power"]
    assert 500 <= power["recent"] <= 600 < power["needed"] and power["probability"] < PLAN.power
    assert f"{power['recent']} of v2's requests in the last 1 h, need {power['needed']}" in read.reason
    assert any(r.startswith("window over, but errors:read: too little recent traffic") for r in decision.reasons)
    story = _check_story({"name": read.name, "outcome": read.outcome.value, "reason": read.reason,
                          "inputs": read.inputs})
    assert "recent evidence: a regression to 1.5" in story and f"(need {PLAN.power:.0%};" in story


def test_the_same_soak_with_enough_traffic_in_the_last_hour_promotes() -> None:
    soak = soak_of(clean_day(40))  # 2,400 reads an hour: the last hour decides alone
    decision = decide(soak, PLAN, at(DAY))
    assert decision.action is Action.PROMOTE
    read = next(c for c in decision.checks if c.name == "errors:read")
    assert read.inputs["recent_power"]["probability"] >= PLAN.power
    assert decide(soak, PLAN, at(DAY), detail=False).action is Action.PROMOTE  # the simulator's fast path agrees


def test_a_window_that_is_the_last_hour_refuses_the_harm_when_it_could_pass() -> None:
    check = soak_of(clean_day(40)).errors[0]
    last = Window(3600.0, 12, 2400, 12, 2400)
    power = recent_power(check, last, last)
    assert power.probability >= PLAN.power and needed(check, last, PLAN.power) <= 2400
    # The same hour inside a four-hour window: a regression over it alone is diluted, rarely refused.
    wide = Window(4 * 3600.0, 48, 9600, 48, 9600)
    assert recent_power(check, wide, last).probability < 0.5


def upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k), the upper terms summed one by one (the function under test sums the lower ones)."""
    def pmf(i: int) -> float:
        return math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
                        + (n - i) * math.log1p(-p))
    return sum(pmf(i) for i in range(max(k, 0), n + 1))


@pytest.mark.parametrize(("n", "p"), [(30, 0.02), (700, 0.015), (5000, 0.015), (20_000, 0.3), (60, 0.99)])
def test_the_binomial_tail_matches_the_exact_sum(n: int, p: float) -> None:
    mean = n * p
    for k in (-1, 0, 1, int(mean) - 3, int(mean), int(mean) + 5, n, n + 1):
        assert binomial_sf(k, n, p) == pytest.approx(min(1.0, upper_tail(k, n, p)), abs=0.01)

"""The engine's goals on simulated soaks with fixed seeds (few of them: bench/decisions.py runs 200 a cell)."""

from __future__ import annotations

import dataclasses

import pytest

from controlplane.rollout.calibration import plan_for
from controlplane.rollout.cases import CASES, cells, jobs, limit_of, run_job, table
from controlplane.rollout.decide import Action, Policy
from controlplane.rollout.sampling import binomial, poisson
from controlplane.rollout.simulate import TRAFFIC, Scenario, run

PLAN = plan_for(Policy(alpha=0.01))
H = 3600.0


def outcomes(scenario: Scenario, seeds: int, horizon_s: float | None = None) -> list[tuple[Action, float | None]]:
    return [(r.action, r.at_s) for r in (run(scenario, PLAN, seed, horizon_s) for seed in range(seeds))]


def five_points_at_one_request_a_second() -> list[float]:
    """Seconds from the regression's start to the rollback, sorted, over 20 seeds (all must roll back)."""
    scenario = Scenario("+5pp", 60, error_delta=0.05, inject_at_s=H + 30, mean_at_inject=True)
    results = outcomes(scenario, 20, 3 * H)
    assert all(action is Action.ROLLBACK and at_s is not None for action, at_s in results)
    return sorted((at_s or 0.0) - (H + 30) for _, at_s in results)


def test_a_five_point_regression_at_one_request_a_second_rolls_back_within_minutes() -> None:
    seconds = five_points_at_one_request_a_second()
    assert seconds[17] <= 10 * 60 and seconds[-1] <= 20 * 60  # p90 of 20 seeds; what holds today


@pytest.mark.xfail(strict=True, reason="issue 14's goal (p90 <= 5 min at 1 req/s) is beyond the information limit: "
                                       "from 1.0 % (v1 0.5 % + 0.5 pp tolerance) to 5.5 % is KL = 0.050 nats a "
                                       "request, and <= 1 % false rollbacks over 1440 looks needs h = ln(144000) = "
                                       "11.9, so even a CUSUM told the exact alternative and fed every request "
                                       "detects at p90 6.7 min (mean 4.0); at 30 % false rollbacks still 5.1 "
                                       "(delay_bound.py). Measured here: p90 8.5 min")
def test_a_five_point_regression_at_one_request_a_second_rolls_back_within_five_minutes() -> None:
    assert five_points_at_one_request_a_second()[17] <= 5 * 60


def test_the_information_limit_of_that_goal_is_printed_with_its_row() -> None:
    case = next(c for c in CASES if c.key == "errors+5pp")
    bound = limit_of(case, "1/s")
    assert (bound.p0, bound.p1) == (0.01, 0.055) and bound.p90_min > 5.0  # the goal is out of reach
    lines = table(cells([case], [run_job(PLAN, ("errors+5pp", "1/s", 0))]))
    assert lines[2] == f"  ^ {bound.text()}" and "p90 6.7 min" in lines[2]


@pytest.mark.parametrize("per_minute", [600.0, 6000.0])
@pytest.mark.parametrize("baseline", [{"v1_volume": 0.0}, {"v1_volume": 0.1}, {"v1_volume": 0.0, "shadow_share": 1.0}],
                         ids=["v1-idle", "v1-tenth", "shadowed"])
def test_a_shared_outage_is_never_rolled_back_whatever_v1_still_serves(per_minute: float,
                                                                       baseline: dict[str, float]) -> None:
    scenario = Scenario("outage", per_minute, outages=((2 * H + 17, 120.0, 0.05),), random_outages_per_day=0.0,
                        **baseline)  # type: ignore[arg-type]
    results = [run(scenario, PLAN, seed, 4 * H) for seed in range(3)]
    assert all(r.action is not Action.ROLLBACK and r.held for r in results)


def test_a_shared_outage_that_shows_faintly_on_v1s_shadow_answers_is_not_rolled_back() -> None:
    # The seeds that rolled back at a request a second: v1 answered 1 error of ~105 copies in the outage
    # (~5 expected), v2 10-11 of ~140 requests; their four-slice rule holds them.
    scenario = Scenario("outage", 60, outages=((2 * H + 17, 120.0, 0.05),), random_outages_per_day=0.0,
                        v1_volume=0.0, shadow_share=1.0)
    assert all(run(scenario, PLAN, seed, 4 * H).action is not Action.ROLLBACK for seed in (100, 163))


def test_with_v1_idle_and_reads_shadowed_latency_is_judged_a_clean_soak_promotes_a_slower_one_rolls_back() -> None:
    clean = Scenario("clean-shadow", 60, v1_volume=0.0, shadow_share=1.0)
    assert all(action is Action.PROMOTE for action, _ in outcomes(clean, 2))
    slower = Scenario("p99-shadow", 60, latency_factor=1.5, inject_at_s=20 * H, v1_volume=0.0, shadow_share=1.0)
    for action, at_s in outcomes(slower, 2):
        assert action is Action.ROLLBACK and at_s is not None and 20 * H < at_s < 24 * H


def test_a_clean_soak_with_v1_serving_no_one_else_is_not_rolled_back() -> None:
    scenario = Scenario("clean-v1idle", 600, v1_volume=0.0, random_outages_per_day=2.0)
    assert all(action is not Action.ROLLBACK for action, _ in outcomes(scenario, 2))


def test_a_mismatch_rate_the_cutover_gate_admits_never_rolls_back() -> None:
    scenario = Scenario("mismatch", 60, shadow_share=1.0, mismatch=0.008)
    assert all(action is Action.PROMOTE for action, _ in outcomes(scenario, 3))


def test_a_regression_in_the_last_hour_is_never_promoted() -> None:
    scenario = Scenario("late", 60, error_delta=0.01, inject_at_s=23 * H)
    assert all(action is not Action.PROMOTE for action, _ in outcomes(scenario, 3))


def test_at_ten_requests_a_minute_a_regression_in_the_last_hour_is_not_promoted_on_older_hours() -> None:
    # The seeds (of 200) that promoted without the power floor: the window judged reached back hours and
    # the last hour's +1 pp was diluted in them. With it they hold (1 of 200 still promotes: seed 115,
    # whose last hour looked clean, 4 errors in 702 reads at a true 1.5 %).
    scenario = Scenario("late", 10, error_delta=0.01, inject_at_s=23 * H)
    seeds = (34, 116, 152, 184)
    without = dataclasses.replace(PLAN, power=0.0)
    assert all(run(scenario, without, seed).action is Action.PROMOTE for seed in seeds)
    assert all(run(scenario, PLAN, seed).action is not Action.PROMOTE for seed in seeds)


def test_failing_notifications_roll_back_though_they_are_a_tiny_share_of_traffic() -> None:
    scenario = Scenario("hooks", 600, error_delta=1.0, error_routes=("webhook",), inject_at_s=0.0)
    assert all(action is Action.ROLLBACK for action, _ in outcomes(scenario, 3))


def test_a_shared_outage_holds_and_never_rolls_back() -> None:
    scenario = Scenario("outage", 6000, outages=((2 * H + 17, 120.0, 0.05),), random_outages_per_day=0.0)
    results = [run(scenario, PLAN, seed, 4 * H) for seed in range(3)]
    assert all(r.action is not Action.ROLLBACK and r.held for r in results)


@pytest.mark.parametrize("per_minute", [60.0, 600.0])
def test_the_edge_of_the_tolerance_is_not_rolled_back(per_minute: float) -> None:
    scenario = Scenario("edge", per_minute, error_delta=0.005, inject_at_s=0.0)
    assert all(action is not Action.ROLLBACK for action, _ in outcomes(scenario, 3))


def test_a_slower_tail_from_hour_twenty_is_rolled_back_before_promotion() -> None:
    scenario = Scenario("p99", 600, latency_factor=1.5, inject_at_s=20 * H)
    for action, at_s in outcomes(scenario, 3):
        assert action is Action.ROLLBACK and at_s is not None and at_s < 24 * H


def test_traffic_that_stops_holds_and_is_never_promoted() -> None:
    results = [run(Scenario("stops", 60, stop_at_s=6 * H), PLAN, seed) for seed in range(2)]
    assert all(r.action is Action.HOLD and r.held for r in results)


def test_the_table_has_every_case_and_says_whether_it_meets_its_goal() -> None:
    chosen = [dataclasses.replace(c, levels=c.levels[:1]) for c in CASES if c.key in ("webhooks", "outage")]
    lines = table(cells(chosen, [run_job(PLAN, job) for job in jobs(chosen, 2)]))
    assert lines[0].startswith("case") and "detection p50/p90/max" in lines[0]
    assert len(lines) == 3 and all(line.endswith(" yes") for line in lines[1:])


def test_the_samplers_have_the_right_means() -> None:
    import random

    rng = random.Random(7)
    for mean in (0.5, 5.0, 40.0):
        draws = [poisson(rng, mean) for _ in range(20_000)]
        assert abs(sum(draws) / len(draws) - mean) < 0.05 * mean + 0.02
    assert abs(sum(binomial(rng, 100, 0.3) for _ in range(5000)) / 5000 - 30) < 0.5


def test_every_case_runs_at_every_traffic_level_or_says_why() -> None:
    for case in CASES:
        assert set(case.levels) == set(TRAFFIC) or case.not_run, case.key
        assert case.judged_at is None or (set(case.judged_at) <= set(case.levels) and case.not_judged), case.key


def test_the_table_says_where_a_case_is_not_run_or_not_judged_and_why() -> None:
    five = next(c for c in CASES if c.key == "errors+5pp")
    idle = dataclasses.replace(next(c for c in CASES if c.key == "errors+5pp-v1idle"), levels=("1/min",))
    lines = table(cells([five, idle], [run_job(PLAN, ("errors+5pp", "1/s", 0)),
                                       run_job(PLAN, ("errors+5pp-v1idle", "1/min", 0))]))
    not_run = [line for line in lines if line.endswith("not run: note below")]
    assert [line.split()[-5] for line in not_run] == ["1/min", "10/min", "10/s", "100/s"]
    unjudged = next(line for line in lines if line.startswith(idle.title))
    assert "not judged here: note below" in unjudged and unjudged.endswith(" -")
    notes = lines[lines.index("notes:") + 1:]
    assert notes[0] == f"- {five.title}: not run at 1/min, 10/min, 10/s, 100/s: {five.not_run}"
    assert notes[1] == f"- {idle.title} at 1/min: {idle.not_judged}" and "information limit" in notes[1]

"""The decision engine: explained verdicts, and proof by simulation that it decides well."""

from __future__ import annotations

import pytest

from controlplane.rollout.decide import Action, Counts, Evidence, Memory, Outcome, Policy, Verdict, decide
from controlplane.rollout.simulate import Scenario, run
from controlplane.rollout.stats import bernoulli_llr, wilson

POLICY = Policy()


def evidence(**overrides: object) -> Evidence:
    base = dict(v2=Counts(50, 10_000), baseline=Counts(50, 10_000), v2_last_hour=Counts(5, 1000),
                v2_last_5m=Counts(0, 100), v2_p99_s=0.2, baseline_p99_s=0.2, latency_samples=10_000,
                shadow=Counts(5, 10_000))
    return Evidence(**{**base, **overrides})  # type: ignore[arg-type]


def test_a_provider_outage_holds_and_never_decides() -> None:
    decision, memory = decide(evidence(provider_error="Prometheus: connection refused"), POLICY, soaked_s=30 * 3600)
    assert (decision.action, decision.verdict) == (Action.HOLD, Verdict.ERROR)
    assert "never promote or roll back blind" in decision.reasons[0]
    assert memory == Memory()


def test_a_clean_finished_soak_promotes_and_says_why() -> None:
    decision, _ = decide(evidence(), POLICY, soaked_s=25 * 3600)
    assert (decision.action, decision.verdict) == (Action.PROMOTE, Verdict.GO)
    error = next(c for c in decision.checks if c.name == "error")
    assert error.outcome is Outcome.PASS and error.inputs["total"] == 10_000 and "p0" in error.inputs
    assert error.test.startswith("CUSUM") and "LLR <=" in error.threshold


def test_no_data_is_never_a_pass_nor_a_failure() -> None:
    quiet = evidence(v2=Counts(0, 10), baseline=Counts(0, 10), v2_last_hour=Counts(0, 10), v2_last_5m=Counts(0, 1),
                     latency_samples=10, shadow=Counts(0, 10))
    decision, _ = decide(quiet, POLICY, soaked_s=25 * 3600)
    assert (decision.action, decision.verdict) == (Action.HOLD, Verdict.INCONCLUSIVE)
    assert all(c.outcome is Outcome.INSUFFICIENT for c in decision.checks)
    assert any("extending the soak" in r for r in decision.reasons)


def test_severe_harm_rolls_back_at_once_with_its_numbers() -> None:
    burning = evidence(v2_last_hour=Counts(300, 1000), v2_last_5m=Counts(30, 100))
    decision, _ = decide(burning, POLICY, soaked_s=600)
    assert (decision.action, decision.verdict) == (Action.ROLLBACK, Verdict.NO_GO)
    assert decision.reasons[0].startswith("severe harm: v2 burns its error budget")


def test_one_error_in_a_quiet_hour_does_not_trip_the_burn_rate() -> None:
    decision, _ = decide(evidence(v2_last_hour=Counts(1, 210), v2_last_5m=Counts(1, 31)), POLICY, soaked_s=600)
    burn = next(c for c in decision.checks if c.name == "burn_rate")
    assert burn.outcome is Outcome.INSUFFICIENT and decision.action is Action.CONTINUE


def test_the_cusum_carries_between_decisions() -> None:
    bad = Counts(300, 10_000)
    _, memory = decide(evidence(v2=Counts(50, 10_000)), POLICY, soaked_s=3600)
    decision, memory = decide(evidence(v2=Counts(50 + bad.events, 10_000 + bad.total)), POLICY, soaked_s=7200,
                              memory=memory)
    assert decision.action is Action.ROLLBACK and memory.error_cusum > 0


def test_statistics() -> None:
    assert bernoulli_llr(0, 0, 0.01, 0.02) == 0.0
    assert bernoulli_llr(20, 1000, 0.01, 0.02) > 0 > bernoulli_llr(5, 1000, 0.01, 0.02)
    low, high = wilson(5, 1000)
    assert low < 0.005 < high


@pytest.mark.parametrize("rpm", [60.0, 600.0, 6000.0])
def test_severe_regressions_roll_back_within_minutes(rpm: float) -> None:
    scenario = Scenario("severe", rpm, inject_at_s=3 * 3600, error_delta=0.05)
    for seed in range(5):
        outcome = run(scenario, POLICY, seed)
        assert outcome.action is Action.ROLLBACK and outcome.decided_at_s is not None
        assert outcome.decided_at_s - 3 * 3600 <= 15 * 60


@pytest.mark.parametrize(("rpm", "kind"), [(60.0, "errors"), (600.0, "errors"), (60.0, "mismatch"),
                                           (1.0, "latency")])
def test_moderate_regressions_roll_back_within_the_window(rpm: float, kind: str) -> None:
    scenario = Scenario(kind, rpm, inject_at_s=3 * 3600, error_delta=0.01 if kind == "errors" else 0.0,
                        mismatch_delta=0.02 if kind == "mismatch" else 0.0,
                        p99_factor=1.5 if kind == "latency" else 1.0)
    for seed in range(5):
        outcome = run(scenario, POLICY, seed)
        assert outcome.action is Action.ROLLBACK and outcome.decided_at_s is not None
        assert outcome.decided_at_s < POLICY.soak_s


@pytest.mark.parametrize("rpm", [1.0, 60.0, 600.0, 6000.0])
def test_no_clean_tenant_is_rolled_back(rpm: float) -> None:
    outcomes = [run(Scenario("clean", rpm), POLICY, seed) for seed in range(40)]
    assert [o for o in outcomes if o.action is Action.ROLLBACK] == []
    assert all(o.action is Action.PROMOTE for o in outcomes)


def test_quiet_tenants_are_held_not_rolled_back() -> None:
    for scenario in (Scenario("quiet", 0.1), Scenario("quiet regression", 0.1, inject_at_s=3600, error_delta=0.05)):
        for seed in range(5):
            assert run(scenario, POLICY, seed).action is Action.HOLD

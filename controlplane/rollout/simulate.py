"""`dualstack rollout simulate`: synthetic per-tenant traffic through the real decision code, on an
accelerated clock, to show detection times and the false-rollback rate.

Each simulated minute draws v1's and v2's requests, errors, latency and shadow mismatches, then
calls decide() exactly as the decider would. Regressions are injected at a chosen time.
"""

from __future__ import annotations

import collections
import math
import random
from dataclasses import dataclass

from controlplane.rollout.decide import Action, Counts, Evidence, Memory, Policy, decide


@dataclass(frozen=True)
class Scenario:
    name: str
    requests_per_minute: float
    base_error: float = 0.005
    inject_at_s: float | None = None
    error_delta: float = 0.0
    p99_factor: float = 1.0
    mismatch_delta: float = 0.0
    base_mismatch: float = 0.001


@dataclass(frozen=True)
class Outcome:
    scenario: str
    seed: int
    action: Action
    decided_at_s: float | None  # when the first rollback or promotion happened


def _binomial(rng: random.Random, n: int, p: float) -> int:
    if n <= 0 or p <= 0:
        return 0
    if n <= 100:
        return sum(1 for _ in range(n) if rng.random() < p)
    mean = n * p
    if mean < 30:  # Poisson, by multiplication (exact enough for small means)
        limit, k, product = math.exp(-mean), 0, rng.random()
        while product > limit:
            k += 1
            product *= rng.random()
        return min(k, n)
    return max(0, min(n, round(rng.gauss(mean, math.sqrt(mean * (1 - p))))))


def run(scenario: Scenario, policy: Policy, seed: int, step_s: float = 60.0,
        horizon_s: float | None = None) -> Outcome:
    rng = random.Random(seed)
    horizon = horizon_s if horizon_s is not None else policy.soak_s + 6 * 3600
    v2 = baseline = shadow = Counts(0, 0)
    recent: collections.deque[tuple[int, int]] = collections.deque(maxlen=int(3600 / step_s))
    carry = 0.0
    t = 0.0
    memory = Memory()
    while t < horizon:
        t += step_s
        carry += scenario.requests_per_minute * step_s / 60
        n = int(carry)
        carry -= n
        harmed = scenario.inject_at_s is not None and t >= scenario.inject_at_s
        error_rate = min(1.0, scenario.base_error + (scenario.error_delta if harmed else 0.0))
        v2_errors = _binomial(rng, n, error_rate)
        v2 = Counts(v2.events + v2_errors, v2.total + n)
        baseline = Counts(baseline.events + _binomial(rng, n, scenario.base_error), baseline.total + n)
        mismatch_rate = scenario.base_mismatch + (scenario.mismatch_delta if harmed else 0.0)
        shadow = Counts(shadow.events + _binomial(rng, n, mismatch_rate), shadow.total + n)
        recent.append((v2_errors, n))
        last_5m = list(recent)[-int(300 / step_s):]
        jitter = 1 + rng.uniform(-0.05, 0.05)
        evidence = Evidence(
            v2=v2, baseline=baseline,
            v2_last_hour=Counts(sum(e for e, _ in recent), sum(m for _, m in recent)),
            v2_last_5m=Counts(sum(e for e, _ in last_5m), sum(m for _, m in last_5m)),
            v2_p99_s=0.2 * (scenario.p99_factor if harmed else 1.0) * jitter, baseline_p99_s=0.2,
            latency_samples=v2.total, shadow=shadow)
        decision, memory = decide(evidence, policy, soaked_s=t, memory=memory)
        if decision.action in (Action.ROLLBACK, Action.PROMOTE):
            return Outcome(scenario.name, seed, decision.action, t)
    return Outcome(scenario.name, seed, Action.HOLD, None)


TRAFFIC = {"1/10min": 0.1, "1/min": 1.0, "1/s": 60.0, "10/s": 600.0, "100/s": 6000.0}


def scenarios() -> list[Scenario]:
    out = []
    for label, rpm in TRAFFIC.items():
        out.append(Scenario(f"clean {label}", rpm))
        out.append(Scenario(f"errors +5pp {label}", rpm, inject_at_s=3 * 3600, error_delta=0.05))
        out.append(Scenario(f"errors +1pp {label}", rpm, inject_at_s=3 * 3600, error_delta=0.01))
        out.append(Scenario(f"p99 x1.5 {label}", rpm, inject_at_s=3 * 3600, p99_factor=1.5))
        out.append(Scenario(f"mismatch 2% {label}", rpm, inject_at_s=3 * 3600, mismatch_delta=0.02))
    return out


def summary(policy: Policy, seeds: int) -> list[str]:
    lines = [f"{'scenario':24} {'rolled back':>11} {'promoted':>9} {'held':>5} {'median detection':>17}"]
    for scenario in scenarios():
        results = [run(scenario, policy, seed) for seed in range(seeds)]
        rolled = [r for r in results if r.action is Action.ROLLBACK]
        detection = sorted((r.decided_at_s or 0) - (scenario.inject_at_s or 0) for r in rolled)
        median = f"{detection[len(detection) // 2] / 60:.0f} min" if detection else "-"
        lines.append(f"{scenario.name:24} {len(rolled):>11} "
                     f"{sum(r.action is Action.PROMOTE for r in results):>9} "
                     f"{sum(r.action is Action.HOLD for r in results):>5} {median:>17}")
    return lines

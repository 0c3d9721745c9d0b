"""The go/no-go decision for a tenant soaking on v2: a pure function of the evidence.

Every check answers pass, fail or insufficient data (never "no data = pass" nor "no data = fail"),
and carries the test, the threshold and the inputs it used, so any decision can be explained.
- Errors: a likelihood-ratio test on v2's per-request error rate. The tolerable rate is v1's
  baseline (its upper 95% bound: an uncertain baseline protects v2 from a false rollback) plus an
  effect-size floor; the alternative is that plus the harm worth detecting. Rollback uses Page's
  CUSUM of the ratio's increments (S = max(0, S + increment)): clean hours cannot bank credit that
  would delay detecting a regression starting later. "Clean" uses the cumulative ratio crossing
  Wald's lower boundary. The false-rollback rate is measured by `dualstack rollout simulate`.
- Severe harm: a page-level burn rate (14.4x the error budget over 1 h AND 5 min, with minimum
  samples so that one error in a quiet hour cannot trip it) rolls back at once.
- Latency: v2's p99 against v1's, with a ratio ceiling and a minimum sample.
- Shadow mismatches: the same sequential test on the mismatch rate.
A provider error (Prometheus down) holds: it never promotes and never rolls back.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.config.model import RolloutPolicy
from controlplane.rollout.stats import bernoulli_llr, wilson

Policy = RolloutPolicy  # the thresholds, declared in the routing file's `rollout:` section


class Outcome(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INSUFFICIENT = "insufficient_data"
    ERROR = "error"


class Action(enum.StrEnum):
    CONTINUE = "continue"  # soaking, nothing decided yet
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    HOLD = "hold"  # no decision possible now (no data, or the evidence source failed)


class Verdict(enum.StrEnum):
    GO = "go"
    NO_GO = "no_go"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Counts:
    events: int  # errors, or mismatches
    total: int

    @property
    def rate(self) -> float:
        return self.events / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class Evidence:
    v2: Counts  # v2's requests and errors since the soak started
    baseline: Counts  # v1's on the same time slices (its history, or the shadow)
    v2_last_hour: Counts
    v2_last_5m: Counts
    v2_p99_s: float | None = None
    baseline_p99_s: float | None = None
    latency_samples: int = 0
    shadow: Counts | None = None  # mismatches / comparisons
    provider_error: str | None = None


@dataclass(frozen=True, slots=True)
class Memory:
    """What a decision carries to the next one: the CUSUM statistics and the counts they have seen."""

    error_cusum: float = 0.0
    mismatch_cusum: float = 0.0
    seen_v2: Counts = Counts(0, 0)
    seen_shadow: Counts = Counts(0, 0)


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    outcome: Outcome
    reason: str
    test: str = ""
    threshold: str = ""
    inputs: Mapping[str, Any] = field(default_factory=dict)
    severe: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    verdict: Verdict
    reasons: tuple[str, ...]
    checks: tuple[CheckResult, ...]


def _sequential(name: str, counts: Counts, seen: Counts, cusum: float, p0: float, p1: float, policy: Policy,
                minimum: int, what: str) -> tuple[CheckResult, float]:
    llr = bernoulli_llr(counts.events, counts.total, p0, p1)
    step = bernoulli_llr(max(0, counts.events - seen.events), max(0, counts.total - seen.total), p0, p1)
    cusum = max(0.0, cusum + step)
    upper, lower = math.log((1 - policy.beta) / policy.alpha), math.log(policy.beta / (1 - policy.alpha))
    inputs = {"events": counts.events, "total": counts.total, "rate": round(counts.rate, 6),
              "p0": round(p0, 6), "p1": round(p1, 6), "llr": round(llr, 3), "cusum": round(cusum, 3)}
    test = f"CUSUM of the likelihood ratio (rollback) and Wald's SPRT (clean), alpha={policy.alpha}"
    threshold = f"roll back when CUSUM >= {upper:.2f}; clean when LLR <= {lower:.2f}"
    if cusum >= upper:
        return CheckResult(name, Outcome.FAIL, f"v2's {name} rate has credibly risen above the tolerable {p0:.2%} "
                           f"(CUSUM {cusum:.1f} >= {upper:.1f}; {counts.rate:.2%} overall)", test, threshold,
                           inputs), cusum
    if counts.total < minimum:
        return CheckResult(name, Outcome.INSUFFICIENT, f"only {counts.total} {what} so far (need {minimum})",
                           test, threshold, inputs), cusum
    if llr <= lower:
        return CheckResult(name, Outcome.PASS, f"v2's {name} rate {counts.rate:.2%} is credibly within the "
                           f"tolerable {p0:.2%}", test, threshold, inputs), cusum
    return CheckResult(name, Outcome.INSUFFICIENT, f"v2's {name} rate {counts.rate:.2%} vs tolerable {p0:.2%}: "
                       "not conclusive yet", test, threshold, inputs), cusum


def _baseline_upper(evidence: Evidence, policy: Policy) -> float:
    """v1's error rate at its upper 95% bound; with too little history, a documented assumed one."""
    if evidence.baseline.total < policy.min_requests:
        return policy.assumed_baseline
    return wilson(evidence.baseline.events, evidence.baseline.total)[1]


def error_check(evidence: Evidence, policy: Policy, memory: Memory) -> tuple[CheckResult, float]:
    baseline_upper = _baseline_upper(evidence, policy)
    p0 = min(0.5, baseline_upper + max(policy.error_floor_abs, policy.error_floor_rel * baseline_upper))
    p1 = min(0.99, p0 + policy.error_detect)
    return _sequential("error", evidence.v2, memory.seen_v2, memory.error_cusum, p0, p1, policy,
                       policy.min_requests, "requests")


def burn_rate_check(evidence: Evidence, policy: Policy) -> CheckResult:
    # The budget is never below what v1 already fails: a legacy path at 0.5% errors "burns" a 99.9%
    # objective 5x in normal operation, and the question here is whether v2 is far worse than that.
    budget = max(1 - policy.slo_target, _baseline_upper(evidence, policy))
    long, short = evidence.v2_last_hour, evidence.v2_last_5m
    inputs = {"errors_1h": long.events, "requests_1h": long.total, "errors_5m": short.events,
              "requests_5m": short.total, "budget": round(budget, 6)}
    threshold = (f"{policy.page_burn}x the error budget ({policy.page_burn * budget:.2%}) over 1 h AND 5 min, "
                 f"with at least {policy.burn_min_errors} errors in the 5 min")
    if long.total < policy.burn_min_long or short.total < policy.burn_min_short \
            or short.events < policy.burn_min_errors:
        return CheckResult("burn_rate", Outcome.INSUFFICIENT, "too few requests or errors in the windows to judge",
                           "multiwindow burn rate", threshold, inputs)
    burn_long, burn_short = long.rate / budget, short.rate / budget
    inputs = {**inputs, "burn_1h": round(burn_long, 2), "burn_5m": round(burn_short, 2)}
    if burn_long >= policy.page_burn and burn_short >= policy.page_burn:
        return CheckResult("burn_rate", Outcome.FAIL, f"v2 burns its error budget {burn_long:.0f}x over the last "
                           f"hour and {burn_short:.0f}x over the last 5 minutes", "multiwindow burn rate",
                           threshold, inputs, severe=True)
    return CheckResult("burn_rate", Outcome.PASS, f"burn rate {burn_long:.1f}x (1 h), {burn_short:.1f}x (5 min)",
                       "multiwindow burn rate", threshold, inputs)


def latency_check(evidence: Evidence, policy: Policy) -> CheckResult:
    inputs = {"v2_p99_s": evidence.v2_p99_s, "baseline_p99_s": evidence.baseline_p99_s,
              "samples": evidence.latency_samples}
    threshold = f"v2 p99 <= {policy.latency_ratio_max}x v1 p99"
    if evidence.v2_p99_s is None or not evidence.baseline_p99_s or \
            evidence.latency_samples < policy.latency_min_samples:
        return CheckResult("latency", Outcome.INSUFFICIENT, "not enough latency samples", "p99 ratio",
                           threshold, inputs)
    ratio = evidence.v2_p99_s / evidence.baseline_p99_s
    inputs = {**inputs, "ratio": round(ratio, 3)}
    if ratio > policy.latency_ratio_max:
        return CheckResult("latency", Outcome.FAIL, f"v2's p99 is {ratio:.2f}x v1's", "p99 ratio", threshold, inputs)
    return CheckResult("latency", Outcome.PASS, f"v2's p99 is {ratio:.2f}x v1's", "p99 ratio", threshold, inputs)


def mismatch_check(evidence: Evidence, policy: Policy, memory: Memory) -> tuple[CheckResult, float] | None:
    if evidence.shadow is None:
        return None
    p0 = policy.mismatch_floor
    return _sequential("mismatch", evidence.shadow, memory.seen_shadow, memory.mismatch_cusum, p0,
                       p0 + policy.mismatch_detect, policy, policy.min_comparisons, "shadow comparisons")


def decide(evidence: Evidence, policy: Policy, soaked_s: float,
           memory: Memory | None = None) -> tuple[Decision, Memory]:
    """What to do with a tenant soaking on v2, why, and what the next decision must remember."""
    memory = memory or Memory()
    if evidence.provider_error is not None:
        check = CheckResult("evidence", Outcome.ERROR, f"the metrics source failed: {evidence.provider_error}")
        return Decision(Action.HOLD, Verdict.ERROR,
                        ("no evidence could be read: holding (never promote or roll back blind)",), (check,)), memory
    error, error_cusum = error_check(evidence, policy, memory)
    checks = [burn_rate_check(evidence, policy), error, latency_check(evidence, policy)]
    mismatch_cusum = memory.mismatch_cusum
    if (mismatches := mismatch_check(evidence, policy, memory)) is not None:
        checks.append(mismatches[0])
        mismatch_cusum = mismatches[1]
    memory = Memory(error_cusum, mismatch_cusum, evidence.v2, evidence.shadow or memory.seen_shadow)
    failed = [c for c in checks if c.outcome is Outcome.FAIL]
    if failed:
        kind = "severe harm" if any(c.severe for c in failed) else "evidence of harm"
        return Decision(Action.ROLLBACK, Verdict.NO_GO, tuple(f"{kind}: {c.reason}" for c in failed),
                        tuple(checks)), memory
    if soaked_s < policy.soak_s:
        remaining_h = (policy.soak_s - soaked_s) / 3600
        reason = f"soaking: {remaining_h:.1f} h of the window left, no evidence of harm"
        return Decision(Action.CONTINUE, Verdict.INCONCLUSIVE, (reason,), tuple(checks)), memory
    primary = [c for c in checks if c.name in ("error", "mismatch")]
    if all(c.outcome is Outcome.PASS for c in primary):
        return Decision(Action.PROMOTE, Verdict.GO, ("the window is over and every check is clean",),
                        tuple(checks)), memory
    waiting = [c for c in primary if c.outcome is not Outcome.PASS]
    return Decision(Action.HOLD, Verdict.INCONCLUSIVE,
                    tuple(f"window over, but {c.name}: {c.reason}; extending the soak" for c in waiting),
                    tuple(checks)), memory

"""The go/no-go decision for a tenant soaking on v2: a pure function of its folded soak.

In this order:
1. Roll back when a check has credible evidence of harm (checks.py: v2 against v1 over the same
   minutes, per route; latency as slow requests; shadow mismatches). The page rule (severe harm:
   large effects over every route, with a minimum sample over the last five minutes and an excess of
   at least `page_burn` x the error budget) rolls back too, and says so.
2. Hold, and say why, when the evidence cannot be trusted now: the source is behind, v2 has served
   nothing for an hour (traffic stopped), v1 and v2 just failed together (a shared failure is
   not v2's fault, nor evidence that v2 is healthy), or v2 just failed in minutes with no concurrent
   v1 to compare (neither v1's traffic nor its answers to shadow copies: maybe a shared failure; such
   minutes count only a fraction towards a rollback, checks.py).
3. Soaking: continue until the window is over.
4. Promote only on recent evidence: every check passes on the last hour (longer when it has fewer
   than its minimum samples) and on the last quarter of the window, on their own, no check is
   more than halfway to its threshold, and the window judged would have refused the declared harm
   had it begun an hour ago (power.py: at low traffic, too little recent evidence holds). Otherwise
   hold: clean early hours bank no credit.
A provider error (the decider's concern) holds too: never promote or roll back blind. And a
rollback v1 cannot take, because it does not hold the tenant's orders, is a hold (`no_way_back`):
v2 keeps serving it while ops decide (v1 would serve its customers another tenant's orders).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from controlplane.config.model import RolloutPolicy
from controlplane.rollout.calibration import Plan
from controlplane.rollout.checks import THIN_BASELINE_SLICES, UNBASELINED_SLICES, CountCheck
from controlplane.rollout.power import RecentPower, any_refuses, needed, recent_power
from controlplane.rollout.soak import LATENCY_MIN_POOL, Soak
from controlplane.rollout.windows import Window
from controlplane.shadow.matchrate import wilson

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
    HOLD = "hold"  # no decision possible now; says why, and is notified


class Verdict(enum.StrEnum):
    GO = "go"
    NO_GO = "no_go"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


class Hold(enum.StrEnum):
    """Why a decision holds (a hold is notified when its kind changes)."""

    PROVIDER = "provider_error"
    BEHIND = "evidence_behind"
    STALE = "no_traffic"
    SHARED = "shared_failure"
    NO_BASELINE = "no_concurrent_baseline"  # v2 failed with no v1 in the same minutes to compare
    UNPROVEN = "not_proven_healthy"
    NO_WAY_BACK = "v1_does_not_hold_tenant"  # v2 fails, and v1 cannot take the tenant: ops must act


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
    checks: tuple[CheckResult, ...] = ()
    hold: Hold | None = None


@dataclass(frozen=True, slots=True)
class Memory:
    """What a decision carries to the next one: the folded soak, as JSON (soak.py). Empty: start."""

    soak: Mapping[str, Any] = field(default_factory=dict)


# The decisions without their story (detail=False), built once: decisions are immutable.
_CONTINUE = Decision(Action.CONTINUE, Verdict.INCONCLUSIVE, ())
_PROMOTE = Decision(Action.PROMOTE, Verdict.GO, ())
_UNPROVEN = Decision(Action.HOLD, Verdict.INCONCLUSIVE, (), (), Hold.UNPROVEN)


def _at(seconds: float) -> str:
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%d %H:%M} UTC"


def provider_error(message: str) -> Decision:
    check = CheckResult("evidence", Outcome.ERROR, f"the metrics source failed: {message}")
    return Decision(Action.HOLD, Verdict.ERROR, ("no evidence could be read: holding (never promote or roll back "
                                                 "blind)",), (check,), Hold.PROVIDER)


def without_way_back(decision: Decision, v1_refusal: str | None) -> Decision:
    """The decision for a tenant v1 may not take (`v1_refusal` says why, None: it may): a rollback is a
    hold, with the evidence that called for it. Other decisions stand."""
    if decision.action is not Action.ROLLBACK or v1_refusal is None:
        return decision
    return Decision(Action.HOLD, decision.verdict,
                    ("holding: v1 does not hold this tenant, so it stays on v2 although its soak fails ("
                     f"{decision.reasons[0]}); ops must act", v1_refusal, *decision.reasons[1:]),
                    decision.checks, Hold.NO_WAY_BACK)


def page_guard(soak: Soak) -> bool:
    """The page rule's minimum sample: enough requests and errors in the last five slices, and v2's
    error rate there credibly (its lower 95 % bound) above v1's by the page-level excess."""
    specs = soak.specs
    x1 = n1 = x2 = n2 = 0
    for a, b, c, d in soak.page.recent:
        x1, n1, x2, n2 = x1 + a, n1 + b, x2 + c, n2 + d
    if n2 < specs.page_min_requests or x2 < specs.page_min_errors:
        return False
    q = max(x1 / n1 if n1 >= 100 else 0.0, soak.page.pooled()[0])
    return wilson(x2, n2, 1.645)[0] - q >= specs.page_excess


def _short_window(check: CountCheck, plan: Plan, now_s: float) -> Window:
    seconds = plan.short_s
    window = check.window(now_s, seconds)
    while window.v2_total < check.needed(window) and seconds < plan.recent_s:
        seconds = min(plan.recent_s, seconds * 2)
        window = check.window(now_s, seconds)
    return window


@dataclass(frozen=True, slots=True)
class Judged:
    """One check judged for promotion: its recent windows and the power floor over the last hour."""

    ok: bool
    short: Window  # the last hour, or longer until its minimum samples
    long: Window  # the last quarter of the soak
    last: Window  # the last hour itself
    power: RecentPower | None = None  # None: not reached (a window or the test failed first)
    together: float = 1.0  # errors: the chance that some route refuses the harm on every route (power.py)


def _promotable(check: CountCheck, plan: Plan, now_s: float) -> Judged:
    """The check's windows and test, then (if they pass) its power floor, on its own."""
    short, long = _short_window(check, plan, now_s), check.window(now_s, plan.recent_s)
    last = short if short.seconds == plan.short_s else check.window(now_s, plan.short_s)
    if not (check.recent_pass(short) and check.recent_pass(long) and max(check.cusum) < check.spec.threshold / 2):
        return Judged(False, short, long, last)
    power = recent_power(check, short, last)
    return Judged(power.meets(plan.power), short, long, last, power)


def _judge(soak: Soak, plan: Plan, now_s: float, *, first_failure: bool = False) -> dict[str, Judged]:
    """Every check promotion needs, judged (`first_failure`: stop at the first that does not pass). The
    error routes meet the power floor together: a regression on every route is refused by some route."""
    judged: dict[str, Judged] = {}
    for check in _judged(soak):
        judged[check.spec.name] = j = _promotable(check, plan, now_s)
        if first_failure and not j.ok and (j.power is None or check is soak.latency):
            return judged
    routes = [c.spec.name for c in soak.errors if c.spec.name in judged and judged[c.spec.name].power is not None]
    together = any_refuses(judged[name].power for name in routes)
    for name in routes:  # the routes whose windows and test pass
        judged[name] = replace(judged[name], ok=together >= plan.power, together=together)
    return judged


def _judged(soak: Soak) -> list[CountCheck]:
    """The checks promotion needs: a route v2 never served in the soak is not this tenant's, and a
    tenant without shadowing has no mismatch check; latency needs v1's bound."""
    out = [c for c in soak.errors if c.v2_total > 0]
    out.append(soak.latency)
    if soak.mismatch.v2_total > 0:
        out.append(soak.mismatch)
    return out


def decide(soak: Soak, plan: Plan, now_s: float, *, detail: bool = True) -> Decision:
    """What to do with a tenant soaking on v2 and why. `detail` False: the same decision, without
    the per-check story (the simulator's fast path)."""
    soaked = now_s - soak.started_s
    failing = [c for c in (*soak.errors, soak.latency, soak.mismatch) if c.failed()]  # soak.checks but the page
    if soak.page.failed() and page_guard(soak):
        failing.insert(0, soak.page)
    if failing:
        reasons = tuple(("severe harm: " if c.spec.severe else "evidence of harm: ") + _harm(c) for c in failing)
        return Decision(Action.ROLLBACK, Verdict.NO_GO, reasons, _results(soak, plan, now_s, None) if detail else ())
    hold: tuple[Hold, str] | None = None
    if soaked > plan.evidence_lag_s and now_s - soak.read_until_s > plan.evidence_lag_s:
        hold = Hold.BEHIND, f"the newest evidence ends at {_at(soak.read_until_s)}: the source is behind"
    elif soaked >= plan.stale_s and now_s - soak.last_traffic_s >= plan.stale_s:
        hold = Hold.STALE, (f"v2 has served no request since {_at(soak.last_traffic_s)}: the evidence is stale, "
                            "nothing can be judged")
    elif (shared := soak.shared_since(now_s)) is not None:
        hold = Hold.SHARED, (f"v1 and v2 failed together at {_at(shared)} (a shared failure, not counted against "
                             "v2): holding for 30 minutes")
    elif (alone := soak.unbaselined_since(now_s)) is not None:
        hold = Hold.NO_BASELINE, (f"v2 failed at {_at(alone)} with no concurrent baseline (v1's traffic and its "
                                  "answers to shadow copies in those minutes were too few to show a failure at "
                                  "v2's rate), so a shared failure cannot be ruled out: only a failure sustained for "
                                  f"{UNBASELINED_SLICES} minutes rolls back; holding for 30 minutes")
    if hold is not None:
        return Decision(Action.HOLD, Verdict.INCONCLUSIVE, (f"holding: {hold[1]}",),
                        _results(soak, plan, now_s, None) if detail else (), hold[0])
    if soaked < plan.soak_s:
        if not detail:
            return _CONTINUE
        left = (plan.soak_s - soaked) / 3600
        return Decision(Action.CONTINUE, Verdict.INCONCLUSIVE,
                        (f"soaking: {left:.1f} h of the window left, no evidence of harm",),
                        _results(soak, plan, now_s, None))
    if not detail:  # the same rule, stopping at the first check that does not pass
        return _PROMOTE if all(j.ok for j in _judge(soak, plan, now_s, first_failure=True).values()) else _UNPROVEN
    judged = _judge(soak, plan, now_s)
    waiting = [name for name, j in judged.items() if not j.ok]
    if not waiting:
        return Decision(Action.PROMOTE, Verdict.GO, ("the window is over and every check passes on the last "
                                                     f"{plan.recent_s / 3600:g} h on its own",),
                        _results(soak, plan, now_s, judged))
    results = _results(soak, plan, now_s, judged)
    reasons = tuple(f"window over, but {r.name}: {r.reason}; extending the soak" for r in results
                    if r.name in waiting)
    return Decision(Action.HOLD, Verdict.INCONCLUSIVE, reasons, results, Hold.UNPROVEN)


def _alternative(check: CountCheck) -> str:
    _value, increment = check.statistic()
    return f"+{increment:.2%}" if increment < 0.01 else f"+{increment * 100:.0f} pp"


def _harm(check: CountCheck) -> str:
    value, _ = check.statistic()
    route = f" on {check.spec.name.split(':')[1]} requests" if ":" in check.spec.name else ""
    return (f"v2's {check.spec.what}{route} have credibly risen above the tolerable {check.last_p0:.2%} "
            f"(evidence for {_alternative(check)} beyond it: {value:.1f} >= {check.spec.threshold:.1f}; "
            f"{check.v2_events} of {check.v2_total} over the soak)")


def _baseline(soak: Soak, check: CountCheck) -> str:
    if not check.spec.against_v1:
        return "none needed (each comparison is v2 against v1 on the same request)"
    if check is soak.latency:
        paired = soak.latency_paired_slices
        if not check.slices:
            return "none yet: neither v1's traffic nor its answers to shadow copies have latency in the soak's minutes"
        return (f"v1 over the same minutes, pooled for its p99 bound ({soak.tail.total:.0f} of v1's requests): in "
                f"{check.slices - paired} of {check.slices} slices v1's own traffic against all of v2's reads and "
                f"payment creations, in {paired} v1's answers to the shadow copies against v2's answers to the same "
                "mirrored reads (v1 serves little else)")
    shadow = (f", {soak.v1_shadow_answers} of them v1's answers to shadow copies"
              if soak.v1_shadow_answers and check.spec.name in ("page", "errors:read") else "")
    alone = (f"; v2 failed in {check.unbaselined_slices} slices with too little v1 to tell a shared failure: "
             f"there each slice counts at most 1/{UNBASELINED_SLICES} of the threshold"
             if check.unbaselined_slices else "")
    if check.thin_slices:
        alone += (f"; in {check.thin_slices} slices v1 answered mostly shadow copies, no more than v2's reads (a "
                  f"shared failure may show faintly there): each counts at most 1/{THIN_BASELINE_SLICES} of the "
                  "threshold")
    if check.v1_slices:
        return (f"v1 over the same minutes ({check.v1_slices} of {check.slices} slices had v1 traffic{shadow}; "
                f"{check.pool_events} of {check.pool_total} pooled, {check.shared_slices} shared-failure slices "
                f"left out){alone}")
    kind = "v1's own history before the soak" if soak.baseline == "history" else "an assumed v1 rate"
    return (f"{kind}: no concurrent baseline (v1 answered neither other traffic nor shadow copies in the same "
            f"minutes){alone}")


def _results(soak: Soak, plan: Plan, now_s: float,
             judged: Mapping[str, Judged] | None) -> tuple[CheckResult, ...]:
    results = []
    for check in soak.checks:
        spec = check.spec
        value, _ = check.statistic()
        q_pool, _ = check.pooled()
        inputs: dict[str, Any] = {
            "baseline": _baseline(soak, check), "v1_rate": round(q_pool, 6), "tolerable": round(check.last_p0, 6),
            "statistic": round(value, 3), "threshold": spec.threshold, "alternative": _alternative(check),
            "v2_events": check.v2_events, "v2_total": check.v2_total,
            "extra_variance": round(check.extra_variance(), 5)}
        if spec.name == "latency" and soak.tail.index is not None:
            inputs["bound_s"] = soak.tail.bounds[soak.tail.index]
            inputs["tolerance_factor"] = round(soak.tail.factor, 3)
        test = (f"CUSUM of the binomial likelihood ratio for each of {len(spec.grid)} effect sizes"
                + (", v2 against v1 over the same minutes" if spec.against_v1 else ""))
        threshold = f"roll back at {spec.threshold:.1f} (calibrated by simulation); {value:.1f} now"
        if check.failed() and spec is soak.page.spec and not page_guard(soak):
            outcome = Outcome.INSUFFICIENT
            reason = (f"its test is at {value:.1f} (threshold {spec.threshold:.1f}) but the last five minutes "
                      "lack the page rule's minimum sample or excess")
        elif check.failed():
            outcome, reason = Outcome.FAIL, _harm(check)
        elif judged is not None and spec.name in judged:
            j = judged[spec.name]
            inputs["recent"] = {f"{w.seconds / 3600:g}h": {"v2": [w.v2_events, w.v2_total],
                                                            "v1": [w.v1_events, w.v1_total]}
                                for w in (j.last, j.short, j.long)}
            lacking = needed(check, j.last, plan.power) if j.power is not None else 0
            if j.power is not None:
                inputs["recent_power"] = {"harm": round(j.power.harm, 6), "probability": round(j.power.probability, 4),
                                          "target": plan.power, "recent": j.power.recent, "needed": lacking}
                if spec.name.startswith("errors:"):
                    inputs["recent_power"]["together"] = round(j.together, 4)
            outcome = Outcome.PASS if j.ok else Outcome.INSUFFICIENT
            reason = _recent_reason(check, j, plan, lacking)
        elif check.v2_total == 0:
            outcome, reason = Outcome.INSUFFICIENT, _nothing_yet(soak, check)
        else:
            outcome = Outcome.PASS
            reason = (f"no evidence of harm: {value:.1f} of {spec.threshold:.1f} "
                      f"({value / spec.threshold:.0%} of the way to a rollback)")
        results.append(CheckResult(spec.name, outcome, reason, test, threshold, inputs, spec.severe))
    return tuple(results)


def _nothing_yet(soak: Soak, check: CountCheck) -> str:
    if check is soak.mismatch:
        return "no shadow comparisons yet (none, if the tenant is not shadowed): nothing to judge"
    if check is soak.latency:
        return (f"no latency compared yet: v1's p99 bound needs {LATENCY_MIN_POOL} of v1's requests over the "
                f"same minutes ({soak.tail.total:.0f} so far; v1's own traffic, or its answers to shadow copies "
                "when it serves no one else: shadowing the tenant's reads gives v1 a latency to compare)")
    return "v2 has served no request on this route yet: nothing to judge"


def _recent_reason(check: CountCheck, judged: Judged, plan: Plan, lacking: int) -> str:
    """`lacking`: the samples the last hour needs to meet the power floor alone (power.needed)."""
    short, long, power = judged.short, judged.long, judged.power
    if judged.ok:
        return (f"healthy on its own over the last {short.seconds / 3600:g} h ({short.v2_events} of "
                f"{short.v2_total}) and {long.seconds / 3600:g} h ({long.v2_events} of {long.v2_total})")
    for window in (short, long):
        if window.v2_total < check.needed(window):
            return (f"only {window.v2_total} of v2's {check.spec.what.split()[-1]} samples in the last "
                    f"{window.seconds / 3600:g} h (need {check.needed(window)} to show it healthy)")
        if not check.recent_pass(window):
            return (f"{window.v2_events} of {window.v2_total} in the last {window.seconds / 3600:g} h: not shown "
                    f"below {check.limit(window):.2%} (95 % upper bound)")
    if power is not None and not judged.ok:
        q = check.pooled()[0] * check.spec.factor
        together = (f"; on every route together {judged.together:.0%}" if check.spec.name.startswith("errors:")
                    else "")
        return (f"too little recent traffic to rule out a regression of {(power.harm - q) * 100:+.2g} pp over v1 "
                f"(v2's {check.spec.what} at {power.harm:.2%}{' on every route' if together else ''}): "
                f"{power.recent} of v2's requests in the last {plan.short_s / 3600:g} h, need {lacking}; the "
                f"window judged reaches back {short.seconds / 3600:g} h, where such a regression over the last "
                f"{plan.short_s / 3600:g} h would be refused {power.probability:.0%} of the time{together} "
                f"(need {plan.power:.0%})")
    value, _ = check.statistic()
    return f"its test is {value:.1f}, more than halfway to {check.spec.threshold:.1f}"

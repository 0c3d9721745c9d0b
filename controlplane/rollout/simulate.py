"""Simulated soaks through the real decision code: `dualstack rollout simulate` and bench/decisions.py.

Each simulated minute draws what the routers would count for one tenant, v2 and v1 side by side, as
per-minute counts (not per request, so a simulated day costs milliseconds):
- traffic: Poisson with a daily cycle, split into reads, payment creation and notifications (0.2-0.5 %);
- v1 in the same minutes as the baseline is really taken (`v1_volume` x v2's traffic; 0: none, so
  only v1's history before the soak);
- errors: each backend's per-minute rate moves on its own (clustered errors: gamma, `dispersion_cv`)
  and both fail together in shared outages (random ones as noise, scheduled ones as a case);
- latency: a two-component log-normal (a slow tail of 3 %), shared minute-to-minute jitter, counted
  above each histogram bound where 1e-4 to 1/2 of requests are slower (elsewhere taken as expected);
- shadow comparisons of reads with a mismatch rate, and v1's answers to those copies (at v1's rate)
  with both sides' latency;
- router restarts: a restarted router's counts for the minute are what it counted since it started
  (the sources' rule), so the minute undercounts and never goes negative;
- regressions starting at any time, on chosen routes; traffic that stops.
The decision runs every minute (decide(..., detail=False): the same decision without the story).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Final

from controlplane.config.latency_buckets import DURATION_BUCKETS
from controlplane.rollout.calibration import Plan
from controlplane.rollout.decide import Action, decide, page_guard
from controlplane.rollout.evidence import ROUTES, History, Latency, Slice
from controlplane.rollout.sampling import binomial, poisson, traffic
from controlplane.rollout.soak import Soak
from controlplane.shadow.matchrate import MatchRate

BOUNDS: Final = DURATION_BUCKETS  # the routers' histogram buckets
START_S: Final = 1_767_225_600.0  # 2026-01-01 00:00 UTC: simulated soaks start at midnight
LATENCY_MEDIAN_S: Final = 0.08
LATENCY_SIGMA: Final = 0.5
TAIL_SHARE, TAIL_MEDIAN_S, TAIL_SIGMA = 0.03, 0.3, 0.6


@dataclass(frozen=True)
class Scenario:
    name: str
    per_minute: float  # v2's requests a minute, averaged over the day
    base_error: float = 0.005  # v1's error rate, and v2's before any regression
    error_delta: float = 0.0  # v2's extra error rate from inject_at_s on
    error_routes: tuple[str, ...] = ROUTES
    inject_at_s: float | None = None
    latency_factor: float = 1.0  # v2 this much slower from inject_at_s on
    v1_volume: float = 1.0
    webhook_share: tuple[float, float] = (0.002, 0.005)  # drawn per soak
    write_share: float = 0.25
    shadow_share: float = 0.0  # share of v2's reads mirrored to v1: compared, and v1's answers its baseline
    mismatch: float = 0.001
    outages: tuple[tuple[float, float, float], ...] = ()  # (start_s, seconds, error rate) on both backends
    random_outages_per_day: float = 0.5  # 2 minutes at 5 % on both, at random times
    dispersion_cv: float = 0.3
    latency_jitter: float = 0.05
    restarts_per_day: float = 1.0
    diurnal: float = 0.6  # the daily cycle's amplitude
    stop_at_s: float | None = None  # v2's traffic stops
    history_minutes: int = 1440  # v1's record before the soak, at the same traffic
    mean_at_inject: bool = False  # the daily cycle passes its mean (per_minute) when the regression starts


@dataclass(frozen=True)
class Result:
    scenario: str
    seed: int
    action: Action  # rollback or promote, or hold if neither happened by the horizon
    at_s: float | None  # seconds into the soak
    held: bool  # a hold happened at some point (and was notified)


@lru_cache(maxsize=4096)
def _survival(scale: float) -> tuple[float, ...]:
    """The share of requests slower than each bound, for latencies `scale` times the usual."""
    root2 = math.sqrt(2)

    def share(bound_s: float) -> float:
        main = 0.5 * math.erfc(math.log(bound_s / (LATENCY_MEDIAN_S * scale)) / (LATENCY_SIGMA * root2))
        tail = 0.5 * math.erfc(math.log(bound_s / (TAIL_MEDIAN_S * scale)) / (TAIL_SIGMA * root2))
        return (1 - TAIL_SHARE) * main + TAIL_SHARE * tail

    return tuple(share(b) for b in BOUNDS)


_NONE: Final = (0,) * len(BOUNDS)


@lru_cache(maxsize=4096)
def _draws(scale: float) -> tuple[tuple[int, float, float | None], ...]:
    """_above's plan for one scale, slowest bound first: (bound's index, share slower, the chance a
    request not slower than the next bound up is slower than this one; None: taken as expected)."""
    plan: list[tuple[int, float, float | None]] = []
    share_next = 0.0
    shares = _survival(scale)
    for i in range(len(BOUNDS) - 1, -1, -1):
        share = shares[i]
        drawn = not (share < 1e-4 or share > 0.5)
        plan.append((i, share, (share - share_next) / (1 - share_next) if drawn else None))
        share_next = share
    return tuple(plan)


def _above(rng: random.Random, n: int, scale: float) -> tuple[int, ...]:
    """Requests slower than each bound: drawn nested from the slowest bound down where the share is
    between 1e-4 and 1/2 (the tail a p99 bound lives in), taken as expected elsewhere."""
    if n <= 0:  # nothing drawn: every count is zero
        return _NONE
    counts = [0] * len(BOUNDS)
    above_next = 0
    for i, share, chance in _draws(scale):
        if chance is None:
            expected = round(n * share)
            if expected > above_next:
                above_next = expected
        else:
            above_next += binomial(rng, n - above_next, chance)
        counts[i] = above_next
    return tuple(counts)


class _Routers:
    """Two routers; a restart loses what the restarted one counted earlier in that minute."""

    def __init__(self, rng: random.Random, per_day: float) -> None:
        self.rng, self.chance = rng, per_day / 1440 * 2

    def restarted(self) -> bool:
        return self.rng.random() < self.chance

    def kept(self, count: int) -> int:
        half = binomial(self.rng, count, 0.5)  # the restarted router's share of the minute
        return count - half + binomial(self.rng, half, self.rng.random())  # it counts from zero


def run(scenario: Scenario, plan: Plan, seed: int, horizon_s: float | None = None,
        peaks: dict[str, float] | None = None) -> Result:
    """One soak. With `peaks` (calibration), nothing stops it: each check's largest statistic over the
    soak is recorded there instead (the page rule's only when its minimum sample was met)."""
    rng = random.Random(seed)
    s = scenario
    horizon = horizon_s if horizon_s is not None else plan.soak_s + 6 * 3600
    webhook = rng.uniform(*s.webhook_share)
    shares = (1 - s.write_share - webhook, s.write_share, webhook)
    phase = rng.random() * 2 * math.pi
    if s.mean_at_inject and s.inject_at_s is not None:  # sin(...) = 0 there, rising or falling
        phase = (math.pi if rng.random() < 0.5 else 0.0) - 2 * math.pi * s.inject_at_s / 86400
    outages = list(s.outages)
    for _ in range(poisson(rng, s.random_outages_per_day * horizon / 86400)):
        outages.append((rng.uniform(0, horizon), 120.0, 0.05))
    routers = _Routers(rng, s.restarts_per_day)
    gamma_k = 1 / (s.dispersion_cv ** 2) if s.dispersion_cv > 0 else 0.0
    soak = Soak(plan.specs, START_S)
    read, write, hook = (round(s.per_minute * share * s.history_minutes) for share in shares)
    soak.start(History((read, write, hook), (binomial(rng, read, s.base_error), binomial(rng, write, s.base_error),
                                             binomial(rng, hook, s.base_error)), s.history_minutes * 60.0)
               if s.history_minutes else None)
    harmed_routes = tuple(route in s.error_routes for route in ROUTES)
    held, t = False, 0.0
    while t < horizon:
        t += 60.0
        harmed = s.inject_at_s is not None and t > s.inject_at_s
        shared = max((rate for start, length, rate in outages if start < t <= start + length + 60), default=0.0)
        level = s.per_minute * (1 + s.diurnal * math.sin(2 * math.pi * t / 86400 + phase))
        stopped = s.stop_at_s is not None and t > s.stop_at_s
        v2n, v2e, v1n, v1e = [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]
        restart = routers.restarted()
        base = 0.0
        for requests, errors, volume, v2 in ((v2n, v2e, 0.0 if stopped else 1.0, True),
                                             (v1n, v1e, s.v1_volume, False)):
            base = s.base_error * (rng.gammavariate(gamma_k, 1 / gamma_k) if gamma_k else 1.0)
            for i in range(3):
                n = traffic(rng, level * shares[i] * volume)
                if not n:
                    continue
                rate = base + s.error_delta if v2 and harmed and harmed_routes[i] else base
                e = binomial(rng, n, min(1.0, max(rate, shared)))
                if restart:
                    kept = routers.kept(n)
                    e, n = binomial(rng, e, kept / n), kept
                requests[i], errors[i] = n, e
        jitter = round(math.exp(rng.gauss(0, s.latency_jitter)), 2) if s.latency_jitter else 1.0
        n2, n1 = v2n[0] + v2n[1], v1n[0] + v1n[1]
        latency = Latency(BOUNDS, n2, _above(rng, n2, jitter * (s.latency_factor if harmed else 1.0)),
                          n1, _above(rng, n1, jitter))
        shadow, v1_shadow, paired = MatchRate(), (0, 0), None
        if s.shadow_share:  # v1 answers the copies at its own rate this minute (`base`: v1's, drawn last)
            compared = binomial(rng, v2n[0], s.shadow_share)
            mismatched = binomial(rng, compared, s.mismatch)
            shadow = MatchRate(compared - mismatched, mismatched)
            v1_shadow = (compared, binomial(rng, compared, min(1.0, max(base, shared))))
            if n1 < compared:  # the decision reads the mirrored pairs' latency only then (soak.py)
                slower = jitter * (s.latency_factor if harmed else 1.0)
                paired = Latency(BOUNDS, compared, _above(rng, compared, slower),
                                 compared, _above(rng, compared, jitter))
        soak.fold(Slice(START_S + t, 60.0, (v2n[0], v2n[1], v2n[2]), (v2e[0], v2e[1], v2e[2]),
                        (v1n[0], v1n[1], v1n[2]), (v1e[0], v1e[1], v1e[2]), latency, shadow, v1_shadow, paired))
        if peaks is not None:
            for check in soak.checks:
                if check is not soak.page or page_guard(soak):
                    peaks[check.spec.name] = max(peaks.get(check.spec.name, 0.0), max(check.cusum))
            continue
        decision = decide(soak, plan, START_S + t, detail=False)
        if decision.action in (Action.ROLLBACK, Action.PROMOTE):
            return Result(s.name, seed, decision.action, t, held)
        held = held or decision.action is Action.HOLD
    return Result(s.name, seed, Action.HOLD, None, held)


def at_rate(scenario: Scenario, per_minute: float, label: str) -> Scenario:
    return replace(scenario, name=f"{scenario.name} @ {label}", per_minute=per_minute)


TRAFFIC: Final = {"1/min": 1.0, "10/min": 10.0, "1/s": 60.0, "10/s": 600.0, "100/s": 6000.0}

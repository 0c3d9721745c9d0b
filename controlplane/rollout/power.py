"""Promotion's power floor: could the recent evidence have seen a regression that began an hour ago?

A check passes for promotion when v2's rate over its recent window is shown (95 % upper bound) below
its limit. With little traffic the last hour cannot show that, so the window judged reaches further
back (decide.py, `_short_window`): at 10 requests a minute, four hours. A regression that began in
the last hour is then diluted into hours of clean traffic and passes unseen.

The floor, stated: over the window judged (`short`), suppose v2's rate over the last hour (`last`,
Plan.short_s: the declared recent period) had been the declared harm, `harm(check, window)`: the
tolerable rate plus the smallest harm worth detecting, i.e. v1 + tolerance + detect for errors
(v1 + 1 pp with the default policy: 0.5 pp tolerated, 0.5 pp worth detecting), 1.5 x the tolerable
share for latency. With v2's counts over the rest of the window as observed, the window's pass rule
must then refuse with probability at least `target` (Plan.power, 99 %: calibration.py says why).
Otherwise the promotion holds: too little recent traffic to rule out that regression.

The error routes (reads, payment creation, notifications) meet the floor together, against that
regression on every route: some route must refuse it with probability `target` (their counts are
independent). A regression confined to one small route in the last hour is left to that route's
own windows and test: a floor per route held 18 % of clean soaks at a request a second for 6 h
after the window (measured with a 95 % target), their payment creations and notifications filling
an hour too thinly. A window that is the last hour itself nearly always meets the floor when it has
the samples to pass at all (the harm lies beyond the limit its 95 % upper bound must stay under);
the floor bites when the window had to reach back.

The cutover gate's mismatch check is judged by the gate's own rule over its own window, not here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from controlplane.rollout.checks import CountCheck
from controlplane.rollout.stats import binomial_sf, upper_bound
from controlplane.rollout.windows import Window

MAX_SAMPLES = 10_000_000  # the search for the samples needed stops here (a rate no traffic can show)


@dataclass(frozen=True, slots=True)
class RecentPower:
    """How likely the window judged was to refuse a regression confined to the last hour."""

    probability: float
    harm: float  # the rate the regression is supposed at, over the last hour
    recent: int  # v2's samples in the last hour

    def meets(self, target: float) -> bool:
        return self.probability >= target


def harm(check: CountCheck, window: Window) -> float:
    """The declared regression: the smallest harm worth rolling back for beyond the tolerable rate."""
    tolerable = check.tolerable(window)
    return min(1.0, tolerable * (1 + check.spec.detect) if check.spec.relative else tolerable + check.spec.detect)


def refused_from(check: CountCheck, window: Window) -> int:
    """The fewest v2 events in `window` for which its pass rule refuses (upper bound at the limit)."""
    limit, total = check.limit(window), window.v2_total
    low, high = 0, total + 1  # upper_bound rises with the events; total + 1: never refused
    while low < high:
        middle = (low + high) // 2
        if upper_bound(middle, total) >= limit:
            high = middle
        else:
            low = middle + 1
    return low


def recent_power(check: CountCheck, short: Window, last: Window) -> RecentPower:
    """The floor for one check (see the module's docstring): `short` is the window judged, `last` the
    last hour (the end of `short`)."""
    rate = harm(check, short)
    if check.spec.gate:
        return RecentPower(1.0, rate, last.v2_total)
    before = short.v2_events - last.v2_events  # v2's events in the window, before the last hour
    probability = binomial_sf(refused_from(check, short) - before, last.v2_total, rate)
    return RecentPower(probability, rate, last.v2_total)


def any_refuses(powers: Iterable[RecentPower | None]) -> float:
    """The chance that at least one of independent checks refuses (their counts are disjoint)."""
    return 1.0 - math.prod(1.0 - p.probability for p in powers if p is not None)


def needed(check: CountCheck, last: Window, target: float) -> int:
    """The fewest samples in the last hour, at its v1 counts, for it to pass alone (check.needed) and
    to refuse the harm with probability `target`: what the explanation says the floor lacks (a search,
    so computed only for it, never for the decision; 0 for the gate's check)."""
    if check.spec.gate:
        return 0
    n = max(check.needed(last), 16)
    while n < MAX_SAMPLES:
        window = Window(last.seconds, last.v1_events, last.v1_total, 0, n)
        if binomial_sf(refused_from(check, window), n, harm(check, window)) >= target:
            return n
        n = int(n * 1.25) + 1
    return MAX_SAMPLES

"""Statistics for counts that are looked at every minute for a day. Pure functions, no state.

(The Wilson interval lives with the match rate, controlplane/shadow/matchrate.py.)"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import lru_cache

from controlplane.shadow.matchrate import wilson

# Per-slice rates are rounded UP to this relative grid before their logarithms are looked up: the
# tables are cached (a day of minutes reuses a few hundred of them) and the rounding only ever makes
# the tolerable rate larger, never a false rollback more likely.
_RATE_STEP = 1.01


def bernoulli_llr(events: int, total: int, p0: float, p1: float) -> float:
    """Log-likelihood ratio of rate p1 against p0 after `events` in `total` Bernoulli trials."""
    if total == 0:
        return 0.0
    return events * math.log(p1 / p0) + (total - events) * math.log((1 - p1) / (1 - p0))


_LOG_STEP = math.log(_RATE_STEP)
_GRID = tuple(_RATE_STEP ** -i for i in range(1400))  # 1 down to 1e-6


def rounded_up(rate: float) -> float:
    """`rate` rounded up to the cached grid (1 % relative steps), within (1e-6, 0.9)."""
    if rate >= 0.9:
        return 0.9
    if rate <= 1e-6:
        return _GRID[1388]
    return _GRID[int(-math.log(rate) / _LOG_STEP)]


@lru_cache(maxsize=4096)
def llr_table(p0: float, increments: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """For each alternative p0 + increment: the log-likelihood ratio of one event and of one non-event.

    Alternatives are capped below 1, so a huge increment on a large p0 stays a valid rate."""
    per_event, per_other = [], []
    for increment in increments:
        p1 = min(p0 + increment, 0.5 + p0 / 2)
        per_event.append(math.log(p1 / p0))
        per_other.append(math.log1p(-p1) - math.log1p(-p0))
    return tuple(per_event), tuple(per_other)


def cusum_step(statistics: list[float], events: int, total: int, table: tuple[tuple[float, ...], tuple[float, ...]],
               scale: float, ceiling: float) -> None:
    """Advance one CUSUM per alternative by one slice: S = max(0, S + llr / scale), the slice's
    contribution capped at `ceiling` (a few slices, not one, raise the alarm). In place."""
    others = total - events
    for k, (value, event, other) in enumerate(zip(statistics, *table, strict=True)):
        llr = (events * event + others * other) / scale
        value += llr if llr < ceiling else ceiling
        statistics[k] = value if value > 0.0 else 0.0


def conditional_step(statistics: list[float], x1: int, n1: int, x2: int, n2: int, q: float, p0: float,
                     increments: tuple[float, ...], table: tuple[tuple[float, ...], tuple[float, ...]],
                     scale: float, ceiling: float) -> None:
    """Like cusum_step, but each alternative's evidence is the smaller of the one-sample ratio and the
    two-sample one conditional on the slice's errors (x2 of x1 + x2 are v2's, binomial with
    theta = n2 p / (n1 q + n2 p)), floored at zero: for a slice where v1 fails too, the split, not the
    level, is the evidence, and a split that favours v2 only stops the slice counting against it."""
    per_event, per_other = table
    others = n2 - x2
    v1_mass = n1 * q
    theta0 = n2 * p0 / (v1_mass + n2 * p0) if v1_mass > 0 else 1.0
    for k, value in enumerate(statistics):
        llr = x2 * per_event[k] + others * per_other[k]
        if v1_mass > 0:
            p1 = min(p0 + increments[k], 0.5 + p0 / 2)
            theta1 = n2 * p1 / (v1_mass + n2 * p1)
            split = x2 * math.log(theta1 / theta0) + x1 * (math.log1p(-theta1) - math.log1p(-theta0))
        else:
            split = 0.0  # no v1 on this route in this slice: no split to judge, the slice is neutral
        llr = min(llr, max(split, 0.0)) / scale  # never below zero: a v1 error must not cancel v2's
        value += llr if llr < ceiling else ceiling
        statistics[k] = value if value > 0.0 else 0.0


def upper_bound(events: int, total: int, z: float = 1.645) -> float:
    """One-sided upper confidence bound of a rate (Wilson; 95 % by default)."""
    return wilson(events, total, z)[1]


@lru_cache(maxsize=4096)
def needed_samples(rate: float, limit: float, cap: int = 10_000_000) -> int:
    """The fewest trials in which `rate` observed exactly would have its upper bound below `limit`."""
    if rate >= limit:
        return cap
    n = 16
    while n < cap and upper_bound(round(n * rate), n) >= limit:
        n = int(n * 1.25) + 1
    return min(n, cap)


def poisson_sf(k: int, mean: float) -> float:
    """P(X >= k) for X ~ Poisson(mean)."""
    if k <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    term = math.exp(-mean)
    cdf = term
    for i in range(1, k):
        term *= mean / i
        cdf += term
    return max(0.0, 1.0 - cdf)


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the lower tail summed term by term while the mean is small
    (each term from the one before while P(X = 0) is a float, else each from logs), by the normal
    approximation with continuity correction beyond (a decision's tail, not a p-value)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    mean = n * p
    if mean > 50 and n * (1 - p) > 50:
        return 0.5 * math.erfc((k - 0.5 - mean) / math.sqrt(2 * mean * (1 - p)))
    log_p, log_q = math.log(p), math.log1p(-p)
    below = 0.0  # P(X < k): k is small here (about the mean), so the lower tail is the short sum
    if n * log_q > -700.0:  # P(X = 0) is a float: each term from the one before (the floor asks often)
        term, odds = math.exp(n * log_q), math.exp(log_p - log_q)
        for i in range(k):
            below += term
            term *= (n - i) / (i + 1) * odds
    else:
        for i in range(k):
            below += math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p
                              + (n - i) * log_q)
    return min(1.0, max(0.0, 1.0 - below))


def survival_at(bounds: Sequence[float], above: Sequence[float], total: float, at: float) -> float:
    """The share of observations slower than `at`, interpolated log-linearly (in log latency and log
    share) between the histogram bounds around it: for a tolerance, never for a test statistic."""
    if total <= 0:
        return 0.0
    points = [(math.log(b), max(a, 0.5) / total) for b, a in zip(bounds, above, strict=True)]
    x = math.log(at)
    if x <= points[0][0]:
        return points[0][1]
    for (x0, s0), (x1, s1) in itertools.pairwise(points):
        if x <= x1:
            weight = (x - x0) / (x1 - x0)
            return float(math.exp(math.log(s0) + weight * (math.log(s1) - math.log(s0))))
    return points[-1][1]

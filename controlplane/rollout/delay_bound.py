"""How fast any CUSUM can detect a step in an error rate without rolling back clean soaks: the
information limit the page rule is measured against. Pure functions, no state.

A CUSUM for the step p0 -> p1 gains KL(p1 || p0) nats per request on average once the step has
happened (its log-likelihood ratio's drift), and its false alarms go as e^-h: for at most `alpha`
false alarms in a soak of `looks` decisions, its average run length under p0 must be at least
looks / alpha, so h >= ln(looks / alpha) (Lorden; calibration by simulation only ever needs more, for
a grid of alternatives, clustered errors and an estimated v1). The delay after the step is then the
first passage of a random walk with drift KL and variance Var(llr) per request to h: an inverse
Gaussian with mean h / KL (a CUSUM run request by request, floored at zero, lands within a few
percent of it: test_delay_bound.py). A test told the exact alternative and fed every request is the
best case, so these are what no threshold can beat at that false-alarm rate (decisions come once a
minute: add up to one; an estimated v1 and a grid of alternatives add more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DelayBound:
    p0: float  # the tolerable rate: v1's plus the declared tolerance
    p1: float  # the regressed rate
    threshold_nats: float  # h = ln(looks / alpha)
    alpha: float  # false alarms per soak of `looks` decisions
    looks: int
    kl_per_request: float  # nats, KL(p1 || p0)
    mean_min: float  # h / KL, in minutes at the given traffic
    p90_min: float

    def text(self) -> str:
        return (f"information limit: KL({self.p1:.2%} || {self.p0:.2%}) = {self.kl_per_request:.4f} nats a "
                f"request; <= {self.alpha:.0%} false rollbacks over {self.looks} looks needs h = "
                f"{self.threshold_nats:.1f}, and even a CUSUM told the exact alternative detects after "
                f"{self.mean_min:.1f} min on average, p90 {self.p90_min:.1f} min")


def kl_bernoulli(p1: float, p0: float) -> float:
    """KL(p1 || p0) of one Bernoulli trial, in nats."""
    return p1 * math.log(p1 / p0) + (1 - p1) * math.log((1 - p1) / (1 - p0))


def _normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def inverse_gaussian_cdf(x: float, mean: float, shape: float) -> float:
    """P(T <= x) for T inverse Gaussian (the first passage of a drifting Brownian motion)."""
    if x <= 0:
        return 0.0
    root = math.sqrt(shape / x)
    upper = _normal_cdf(-root * (x / mean + 1))
    far = math.exp(2 * shape / mean + math.log(upper)) if upper > 0 else 0.0
    return min(1.0, _normal_cdf(root * (x / mean - 1)) + far)


def inverse_gaussian_quantile(q: float, mean: float, shape: float) -> float:
    low, high = 0.0, mean
    while inverse_gaussian_cdf(high, mean, shape) < q:
        high *= 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if inverse_gaussian_cdf(middle, mean, shape) < q else (low, middle)
    return (low + high) / 2


def cusum_delay_bound(v1_rate: float, tolerance: float, effect: float, per_minute: float, alpha: float,
                      looks: int) -> DelayBound:
    """The least detection delay (minutes) of a step from v1 + `tolerance` to v1 + `effect` at
    `per_minute` requests a minute, for at most `alpha` false alarms over `looks` decisions."""
    p0, p1 = v1_rate + tolerance, v1_rate + effect
    h = math.log(looks / alpha)
    drift = kl_bernoulli(p1, p0)
    step = math.log(p1 / p0) - math.log((1 - p1) / (1 - p0))  # an error's llr minus a success's
    variance = p1 * (1 - p1) * step * step
    mean_requests, shape = h / drift, h * h / variance
    p90_requests = inverse_gaussian_quantile(0.9, mean_requests, shape)
    return DelayBound(p0, p1, h, alpha, looks, drift, mean_requests / per_minute, p90_requests / per_minute)

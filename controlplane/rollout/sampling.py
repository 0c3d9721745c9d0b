"""Random counts for the simulator, cheap enough for thousands of simulated days in pure Python.

Poisson by inversion for small means and by Hoermann's transformed rejection (PTRS, exact) for large
ones; binomials with a small rate as Poisson (slightly more variance than the binomial: a simulated
false-rollback rate errs high, never low), others by summing or a normal approximation.
"""

from __future__ import annotations

import math
import random


def poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0.0:
        return 0
    if mean < 12.0:
        u = rng.random()
        k, term = 0, math.exp(-mean)
        cdf = term
        while u > cdf and k < 1000:
            k += 1
            term *= mean / k
            cdf += term
        return k
    # PTRS (W. Hoermann, "The transformed rejection method for generating Poisson random variables", 1993)
    smu = math.sqrt(mean)
    b = 0.931 + 2.53 * smu
    a = -0.059 + 0.02483 * b
    v_r = 0.9277 - 3.6224 / (b - 2)
    while True:
        u = rng.random() - 0.5
        v = rng.random()
        us = 0.5 - abs(u)
        k = math.floor((2 * a / us + b) * u + mean + 0.43)
        if us >= 0.07 and v <= v_r:  # the quick acceptance (most draws): no logarithm needed
            return int(k)
        if k < 0 or (us < 0.013 and v > us):
            continue
        inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
        log_mean = math.log(mean)
        if (math.log(v) + math.log(inv_alpha) - math.log(a / (us * us) + b)
                <= -mean + k * log_mean - math.lgamma(k + 1)):
            return int(k)


def binomial(rng: random.Random, n: int, p: float) -> int:
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if p <= 0.1:
        return min(n, poisson(rng, n * p))
    if n < 40:
        return sum(1 for _ in range(n) if rng.random() < p)
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    return max(0, min(n, round(rng.gauss(mean, sd))))


def traffic(rng: random.Random, mean: float) -> int:
    """A Poisson count of requests; above 50 a normal draw (requests need no exact tail, errors do)."""
    if mean < 50.0:
        return poisson(rng, mean)
    return max(0, round(rng.gauss(mean, math.sqrt(mean))))

"""Statistics for counts that are looked at again and again. Pure functions."""

from __future__ import annotations

import math


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (sound for small counts and rates near 0 or 1)."""
    if total == 0:
        return 0.0, 1.0
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def bernoulli_llr(events: int, total: int, p0: float, p1: float) -> float:
    """Log-likelihood ratio of rate p1 against p0 after `events` in `total` Bernoulli trials.

    Under any true rate <= p0 its exponential is a non-negative supermartingale, so by Ville's
    inequality the chance that it EVER exceeds 1/alpha is at most alpha, however often it is looked
    at: checking every minute for a day does not inflate false alarms (Wald's SPRT)."""
    if total == 0:
        return 0.0
    return events * math.log(p1 / p0) + (total - events) * math.log((1 - p1) / (1 - p0))

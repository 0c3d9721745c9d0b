"""The one definition of the shadow match rate, for the report, the cutover gate and the decider. Pure.

A comparison is a match (no difference), a mismatch (a difference on a path that is not noise) or
noise (every difference is on a path where the primary differs from itself). Noise is neither a
match nor a mismatch: it says nothing about whether v2 answers the differing field as v1 does, so
it is counted and shown, but left out of the rate. Counting it as a match would let an over-broad
noise set pass the gate (no data is never a pass); counting it as a mismatch would block every
tenant whose answers carry a timestamp.

A fourth class, not_replicated, is the shadow answering 404 for an order the primary has, and
then finding it when asked again a few seconds later: the follow sync had not copied it yet. It
is sync lag, not an incompatibility, so it too is shown and left out of the rate.

    rate = matches / (matches + mismatches)

with its Wilson 95% interval. With no match and no mismatch the rate is 0 and the interval 0-1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (sound for small counts and rates near 0 or 1)."""
    if total == 0:
        return 0.0, 1.0
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class MatchRate:
    matches: int = 0
    mismatches: int = 0
    noise: int = 0
    not_replicated: int = 0

    @property
    def comparisons(self) -> int:
        """Every comparison, noise and not_replicated included."""
        return self.matches + self.mismatches + self.noise + self.not_replicated

    @property
    def judged(self) -> int:
        """The comparisons the rate is over: matches and mismatches."""
        return self.matches + self.mismatches

    @property
    def rate(self) -> float:
        return self.matches / self.judged if self.judged else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """The rate's Wilson 95% interval (low, high)."""
        return wilson(self.matches, self.judged)

    def __add__(self, other: MatchRate) -> MatchRate:
        return MatchRate(self.matches + other.matches, self.mismatches + other.mismatches, self.noise + other.noise,
                         self.not_replicated + other.not_replicated)

    @staticmethod
    def total(rates: Iterable[MatchRate]) -> MatchRate:
        return sum(rates, MatchRate())

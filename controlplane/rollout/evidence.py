"""What the decision engine reads: the soak cut into time slices, v2 and v1 side by side.

A Slice is one interval (normally a minute) of the routers' counters for one tenant:
- v2's requests and errors (5xx) per route (read, write, webhook: payment reads, payment creation and
  payment notifications are judged on their own; admin is operators' traffic and is not judged);
- v1's requests and errors per route over the SAME interval: the concurrent baseline. Failures both
  backends share in a slice (the payment provider, the network) show on both sides;
- latency as counts: for each of the routers' histogram bounds (one fixed list), how many requests
  were slower, for v2 and for v1 (reads and writes together); and the same for the tenant's mirrored
  reads, v2 answering them and v1 answering the copies (the latency baseline when v1 serves no one
  else);
- the shadow comparisons that ended in the interval (matches, mismatches, noise), and v1's answers to
  the tenant's mirrored copies (reads): the same requests, the same minutes. When v1 serves no other
  tenant, they are the only concurrent baseline there is.
Counts are integers. A counter that went down between two readings was restarted: the sources count
from zero (never a negative slice, never the counts from before the soak).

History is v1's record from before the soak: only a fallback, for when v1 answers nothing in the
same minutes, and then it says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from controlplane.config.latency_buckets import DURATION_BUCKETS
from controlplane.shadow.matchrate import MatchRate

ROUTES: Final = ("read", "write", "webhook")
LATENCY_ROUTES: Final = ("read", "write")
ZEROS: Final = (0, 0, 0)


@dataclass(frozen=True, slots=True)
class Latency:
    """Requests slower than each bound (seconds, ascending, finite) in one slice."""

    bounds: tuple[float, ...]
    v2_requests: int
    v2_above: tuple[int, ...]
    v1_requests: int
    v1_above: tuple[int, ...]


def latency_from_buckets(v2: Mapping[float, float] | None, v1: Mapping[float, float] | None,
                         bounds: tuple[float, ...] = DURATION_BUCKETS) -> Latency | None:
    """One slice's cumulative histogram increments (le -> count, +Inf the total) as counts above each
    of the routers' fixed bounds, so every slice has the same bounds (v1's latency is pooled over the
    soak, slice by slice). A bound one side lacks had no increment there (a slice's increments leave
    out the buckets that did not rise): it counts as zero, never as a reason to drop the slice's
    latency. A bound not in the list (a router exporting other buckets) is not read."""
    if not v2 or not v1:
        return None
    total2, total1 = v2.get(math.inf, 0.0), v1.get(math.inf, 0.0)
    return Latency(bounds, round(total2), tuple(max(0, round(total2 - v2.get(b, 0.0))) for b in bounds),
                   round(total1), tuple(max(0, round(total1 - v1.get(b, 0.0))) for b in bounds))


@dataclass(frozen=True, slots=True)
class Slice:
    end_s: float  # unix time the interval ends
    length_s: float
    v2_requests: tuple[int, int, int]  # by ROUTES
    v2_errors: tuple[int, int, int]
    v1_requests: tuple[int, int, int] = ZEROS
    v1_errors: tuple[int, int, int] = ZEROS
    latency: Latency | None = None
    shadow: MatchRate = field(default_factory=MatchRate)
    v1_shadow: tuple[int, int] = (0, 0)  # v1's answers to the tenant's mirrored reads: answered, of which 5xx
    shadow_latency: Latency | None = None  # the mirrored reads: v2's latency (primary) and v1's to the copies


@dataclass(frozen=True, slots=True)
class History:
    """v1's counts for the tenant before the soak (the fallback baseline)."""

    requests: tuple[int, int, int] = ZEROS
    errors: tuple[int, int, int] = ZEROS
    seconds: float = 0.0  # how long the record covers


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a source read for one decision: the new slices since the last one it read."""

    slices: tuple[Slice, ...]
    history: History | None = None  # read once, when the soak starts
    provider_error: str | None = None
    read_until_s: float | None = None  # the end of the newest interval the source could see

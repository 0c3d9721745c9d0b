"""A slice's latency from histogram increments: always the routers' fixed bounds, a bucket that did not
rise on one side is zero there, and v1's pooled latency never starts again because of it."""

from __future__ import annotations

import math

from controlplane.config.latency_buckets import DURATION_BUCKETS
from controlplane.rollout.calibration import plan_for
from controlplane.rollout.decide import Policy
from controlplane.rollout.evidence import Latency, Slice, latency_from_buckets
from controlplane.rollout.soak import Soak

START = 1_767_225_600.0


def increments(per_bucket: dict[float, int]) -> dict[float, float]:
    """A slice's cumulative bucket increments as a Prometheus query returns them: only the buckets that
    rose (every bound at or above the fastest request), and +Inf."""
    out: dict[float, float] = {}
    count = 0
    for bound in (*DURATION_BUCKETS, math.inf):
        count += per_bucket.get(bound, 0)
        if count:
            out[bound] = float(count)
    return out


def test_a_bucket_one_side_lacks_counts_as_no_rise_not_as_no_latency() -> None:
    # v2's requests were all slower than 5 ms, v1's all faster: each side's increments lack the other's
    # low buckets (only the buckets that rose are returned by a Prometheus query of increments).
    v2 = {0.01: 3, 0.025: 4, 0.05: 4, 0.1: 4, 0.25: 4, 0.5: 4, 1.0: 4, 2.5: 4, 5.0: 4, 10.0: 4, 30.0: 4, math.inf: 4}
    v1 = {0.0025: 5, 0.005: 6, 0.01: 6, 0.025: 6, 0.05: 6, 0.1: 6, 0.25: 6, 0.5: 6, 1.0: 6, 2.5: 6, 5.0: 6, 10.0: 6,
          30.0: 6, math.inf: 6}
    latency = latency_from_buckets(v2, v1)
    assert latency == Latency(DURATION_BUCKETS, 4, (4, 4, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
                              6, (6, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))


def test_the_bounds_are_the_routers_list_whichever_buckets_rose() -> None:
    # Only +Inf rose on v2 (every request slower than 30 s); a bound the routers do not export is not read.
    latency = latency_from_buckets({math.inf: 2}, {0.1: 1, 0.07: 1, math.inf: 1})
    assert latency is not None and latency.bounds == DURATION_BUCKETS
    assert latency.v2_above == (2,) * len(DURATION_BUCKETS)
    assert latency.v1_above[DURATION_BUCKETS.index(0.05)] == 1 and latency.v1_above[DURATION_BUCKETS.index(0.1)] == 0


def test_no_latency_without_both_sides() -> None:
    assert latency_from_buckets({0.01: 1, math.inf: 1}, None) is None
    assert latency_from_buckets({}, {0.01: 1, math.inf: 1}) is None


def test_v1s_latency_pool_never_starts_again_when_other_buckets_rise() -> None:
    # Minute by minute the buckets that rise differ (a quiet minute's slowest request is 0.1 s, a busy
    # one's 2.5 s): the pool keeps every one of v1's requests and picks its p99 bound from all of them.
    soak = Soak(plan_for(Policy(alpha=0.01)).specs, START)
    soak.start(None)
    pooled = 0
    for i in range(1, 31):
        # v1: the fastest bucket that rose is 5 ms in some minutes, 50 ms in others; a tenth of its
        # requests take up to 2.5 s
        fastest = 0.005 if i % 3 == 0 else 0.05
        v1 = increments({fastest: 54, 2.5: 6})
        v2 = increments({0.01 if i % 2 else 0.1: 57, 1.0: 3})
        latency = latency_from_buckets(v2, v1)
        assert latency is not None and latency.bounds == DURATION_BUCKETS
        assert latency.v1_above[DURATION_BUCKETS.index(1.0)] == 6 and latency.v1_above[0] == 60
        soak.fold(Slice(START + 60 * i, 60.0, (60, 0, 0), (0, 0, 0), (60, 0, 0), (0, 0, 0), latency))
        pooled += 60
        assert soak.tail.bounds == DURATION_BUCKETS and soak.tail.total == pooled
    assert soak.tail.index == DURATION_BUCKETS.index(1.0)  # v1's p99 bound: a tenth of its requests took 2.5 s
    assert soak.latency.slices > 0 and soak.latency.v2_total > 0  # judged against it, slice after slice

"""The information limit of detecting a step in an error rate: checked against its closed forms and
against CUSUMs run request by request."""

from __future__ import annotations

import math
import random

from controlplane.rollout.delay_bound import (
    cusum_delay_bound,
    inverse_gaussian_cdf,
    inverse_gaussian_quantile,
    kl_bernoulli,
)


def test_kl_of_a_bernoulli_step() -> None:
    assert kl_bernoulli(0.3, 0.3) == 0.0
    assert math.isclose(kl_bernoulli(0.055, 0.01), 0.055 * math.log(5.5) + 0.945 * math.log(0.945 / 0.99))
    assert kl_bernoulli(0.10, 0.01) > kl_bernoulli(0.055, 0.01) > kl_bernoulli(0.02, 0.01) > 0


def test_the_inverse_gaussian_quantile_inverts_its_cdf() -> None:
    for mean, shape in ((1.0, 0.5), (240.0, 900.0), (10.0, 1e4)):
        for q in (0.1, 0.5, 0.9):
            assert math.isclose(inverse_gaussian_cdf(inverse_gaussian_quantile(q, mean, shape), mean, shape), q,
                                abs_tol=1e-9)
    assert inverse_gaussian_quantile(0.5, 240.0, 900.0) < 240.0 < inverse_gaussian_quantile(0.9, 240.0, 900.0)


def test_five_points_at_a_request_a_second_the_case_parameters() -> None:
    # v1 at 0.5 %, tolerance 0.5 pp, +5 pp, 60 requests a minute, <= 1 % false rollbacks over 1440 looks
    bound = cusum_delay_bound(0.005, 0.005, 0.05, 60.0, 0.01, 1440)
    assert (bound.p0, bound.p1) == (0.01, 0.055)
    assert math.isclose(bound.threshold_nats, math.log(144_000))
    assert math.isclose(bound.mean_min, bound.threshold_nats / bound.kl_per_request / 60)
    assert 3.9 < bound.mean_min < 4.1 and 6.4 < bound.p90_min < 6.9  # the goal's 5 min is out of reach
    assert "p90 6.7 min" in bound.text()
    # More false rollbacks buy little: even at 30 % a soak, p90 stays above 5 minutes.
    assert cusum_delay_bound(0.005, 0.005, 0.05, 60.0, 0.3, 1440).p90_min > 5.0
    assert cusum_delay_bound(0.005, 0.005, 0.05, 600.0, 0.01, 1440).p90_min < 1.0  # ten times the traffic


def test_the_bound_matches_a_cusum_run_request_by_request() -> None:
    bound = cusum_delay_bound(0.005, 0.005, 0.05, 60.0, 0.01, 1440)
    up, down = math.log(bound.p1 / bound.p0), math.log((1 - bound.p1) / (1 - bound.p0))
    rng = random.Random(14)
    delays = []
    for _ in range(1000):
        statistic, n = 0.0, 0
        while statistic < bound.threshold_nats:
            n += 1
            statistic = max(0.0, statistic + (up if rng.random() < bound.p1 else down))
        delays.append(n / 60.0)
    delays.sort()
    mean = sum(delays) / len(delays)
    # The floor at zero makes it cross a little sooner, the last step's overshoot a little later: within
    # a few percent (measured: mean 3.9 min, p90 6.4 min against 4.0 and 6.7).
    assert abs(mean / bound.mean_min - 1) < 0.1 and abs(delays[899] / bound.p90_min - 1) < 0.1

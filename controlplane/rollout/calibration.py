"""The thresholds of the sequential checks, found by simulation, and the plan built from the policy.

A CUSUM restarted at every dip has no Ville bound, so its threshold comes from simulation: soaks of
24 h checked every minute at the edge of each tolerance (errors v2 = v1 + 0.5 pp, latency x1.3
against v1's traffic and against v1's answers to shadow copies alone, mismatches at the level the
cutover gate admits), with the simulator's noise (diurnal traffic, clustered errors, random shared
outages, router restarts), at 1 request a minute to 100 a second, all checks together (`python
bench/decisions.py --calibrate`). Measured with the thresholds below, 200 soaks per edge and traffic
level: any check reached its threshold in 0-2 of 200 (2: errors at 1 req/s, one by errors:read and
one by the page rule; 1: latency x1.3 at 1 req/s, latency x1.3 on the shadow pairs at 1 req/min);
the largest statistics fall about e-fold per unit (a CUSUM's false alarms go as e^-h), from 3 % of
soaks reaching 11 (latency at 10 req/s). The table (bench/decisions.py, 200 soaks a cell) shows 0-2
rollbacks per 200 of clean, edge and mismatch soaks at every level (2: the +0.5 pp edge at 10 req/min).
A policy asking for another alpha moves every threshold by log(ALPHA / alpha).

The page rule at 1 req/s detects +5 pp in 4.5/8.5 min (p50/p90). The information limit
(delay_bound.py) puts p90 <= 5 min out of reach: from 1.0 % (v1 + tolerance) to 5.5 % is 0.050 nats
a request, <= 1 % false rollbacks over 1,440 looks needs h = ln(144,000) = 11.9, so even a CUSUM told
the exact alternative and fed every request detects at 4.0 min on average and 6.7 min at p90 (5.1
at 30 % false rollbacks). Lower thresholds or a one-slice cap that reached 4.5 min rolled back
16-48 % of soaks at the +0.5 pp edge (measured).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from controlplane.config.model import CutoverPolicy, RolloutPolicy
from controlplane.rollout.checks import CheckSpec
from controlplane.rollout.soak import Specs

ALPHA: Final = 0.01  # the false-rollback rate per soak the thresholds below are calibrated for
THRESHOLD: Final = 13.0  # errors per route, mismatches
LATENCY_THRESHOLD: Final = 14.5  # its tolerance is exact at the edge (no plug-in margin), so it runs hotter
PAGE_THRESHOLD: Final = 11.0  # the page rule: large effects only, over every route, behind its sample guard
ERROR_GRID: Final = (1.0, 2.0, 4.0, 10.0, 30.0, 100.0)  # x error_detect: +0.5 pp to +50 pp beyond tolerance
PAGE_GRID: Final = (10.0, 30.0, 100.0)
LATENCY_DETECT: Final = 0.5  # a tail share 1.5x the tolerable one is worth detecting...
LATENCY_GRID: Final = (1.0, 2.0, 4.0, 10.0)  # ...up to 6x
MISMATCH_GRID: Final = (1.0, 2.0, 5.0, 20.0, 50.0)
WEBHOOK_MIN_SAMPLES: Final = 10  # notifications are <1 % of traffic: their own, smaller minimum...
# Promotion's power floor (power.py): the window judged must refuse a regression (v1 + tolerance +
# detect) over the last hour this often. It is asked at every look after the window, each minute for
# hours: at 95 % a look, 2 of 200 soaks with +1 pp from hour 23 at 10 req/min were still promoted
# (measured); at 99 %, see the README's table.
RECENT_POWER: Final = 0.99
WEBHOOK_PROOF: Final = 0.25  # ...and promotion asks only to show that most of them succeed (Midtrans retries)


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a decision needs besides the evidence."""

    specs: Specs
    soak_s: float
    recent_s: float  # promotion judges only the last this-many seconds
    short_s: float = 3600.0  # ...and the last hour (or more, until its minimum samples) on its own
    stale_s: float = 3600.0  # no v2 request for this long: the evidence is stale, hold
    evidence_lag_s: float = 900.0  # the newest slice is older than this: the source is behind, hold
    power: float = 0.99  # promotion: the recent window refuses a regression over the last hour this often (power.py)


def shifted(threshold: float, alpha: float) -> float:
    return threshold + math.log(ALPHA / alpha)


def plan_for(policy: RolloutPolicy, cutover: CutoverPolicy | None = None) -> Plan:
    cutover = cutover or CutoverPolicy()
    h, h_page = shifted(THRESHOLD, policy.alpha), shifted(PAGE_THRESHOLD, policy.alpha)
    h_latency = shifted(LATENCY_THRESHOLD, policy.alpha)
    tolerance, detect = policy.error_floor_abs, policy.error_detect

    def errors(route: str, minimum: int, proof: float) -> CheckSpec:
        return CheckSpec(f"errors:{route}", "errors", tolerance, detect, ERROR_GRID, h, minimum, proof)

    # The mismatch level the cutover gate admits is tolerable here too, and a rollback needs the gate's
    # own refusal (its minimum comparisons, its window): the gate and the soak agree.
    mismatch_tolerance = max(policy.mismatch_floor, 1.0 - cutover.min_match_rate)
    specs = Specs(
        errors=(errors("read", policy.min_requests, detect / 2), errors("write", policy.min_requests, detect / 2),
                errors("webhook", min(WEBHOOK_MIN_SAMPLES, policy.min_requests), WEBHOOK_PROOF)),
        page=CheckSpec("page", "errors", tolerance, detect, PAGE_GRID, h_page, policy.burn_min_short, severe=True),
        latency=CheckSpec("latency", "slow requests", 0.0, LATENCY_DETECT, LATENCY_GRID, h_latency,
                          policy.latency_min_samples, LATENCY_DETECT / 2, relative=True),
        mismatch=CheckSpec("mismatch", "mismatches", mismatch_tolerance, policy.mismatch_detect, MISMATCH_GRID, h,
                           max(policy.min_comparisons, cutover.min_comparisons), against_v1=False, gate=True,
                           gate_window_s=cutover.shadow_window_s),
        latency_ratio=policy.latency_ratio_max, assumed_baseline=policy.assumed_baseline,
        page_min_requests=policy.burn_min_short, page_min_errors=policy.burn_min_errors,
        page_excess=policy.page_burn * (1.0 - policy.slo_target))
    return Plan(specs, policy.soak_s, recent_s=policy.soak_s / 4, power=RECENT_POWER)

"""One machinery for every count the soak watches: errors per route, slow requests, shadow mismatches.

For each slice, v2's events (x2 of n2) are tested against the tolerable rate
    p0 = factor * q + tolerance
where q is v1's rate: v1 over the soak so far (its own history before the soak as a prior, and the
only baseline when v1 answers nothing in the same minutes) at +1.5 standard errors, or v1 in this
very slice when that is credibly higher (its lower 95 % bound). So a failure both backends share
raises the tolerable rate with it. Over this slice and the two before it:
- v1 credibly (p < 1 %) above its own rate: the slice is judged on the split of its errors between
  v1 and v2 as well (binomial, conditional on the slice's errors), so the difference, not the
  level, is the evidence;
- v1 and v2 both failing at over twice v1's rate (p < 0.1 %): a shared failure, left out of the test
  and of v1's pooled rate; the decision holds.
- For the mismatch check, a rollback also needs the cutover gate's refusal over its own window.
The check over every route runs first and tells the per-route checks, whose slices are too thin to
see a shared failure alone. A one-sample check (mismatches: each comparison is already v2 against
v1 on the same request) has a fixed tolerable rate.

The test is a CUSUM of the binomial log-likelihood ratio for each of a grid of alternatives p0 + d
(a generalised likelihood ratio over effect sizes): small regressions accumulate for hours, large
ones cross in minutes, and clean hours never bank credit (each CUSUM floors at zero). Clustered
errors are allowed for: v1's per-slice counts give the extra variance beyond binomial (method of
moments), each slice's evidence is divided by it, and no slice may contribute more than half the
threshold (`CheckSpec.slices`): no one minute can roll back alone. A slice with no
concurrent baseline (v1 answered too little to show a failure at v2's rate) contributes at most
1/UNBASELINED_SLICES of it. (A third would make a two-minute shared outage whose
errors happen to fall mostly on v2 harmless too, at two minutes' more detection at a request a
second: measured, not worth it.) A slice whose v1 is mostly its answers to shadow copies (as few as
v2's reads) contributes at most 1/THIN_BASELINE_SLICES. A CUSUM restarted at every dip has no Ville
bound: the threshold is calibrated by simulation (calibration.py) for at most 1 % false rollbacks per
24 h soak at the tolerance's edge.

State is mutable only here, folded slice by slice (`observe`); it serialises to JSON for the next
decision. Judging it (`failed`, `window`, `recent_pass`) never changes it.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from controlplane.rollout.stats import (
    conditional_step,
    cusum_step,
    llr_table,
    needed_samples,
    poisson_sf,
    rounded_up,
    upper_bound,
)
from controlplane.rollout.windows import BUCKET_S, Buckets, Window
from controlplane.shadow.matchrate import MatchRate, wilson

SLICES_TO_ROLL_BACK: Final = 2  # a rollback needs the evidence of at least this many slices
PLUG_IN_Z: Final = 1.5  # v1's pooled rate is used at +1.5 standard errors (its uncertainty is v2's benefit)
PRIOR_CAP: Final = 5000  # history before the soak weighs at most this many requests
ELEVATED_P: Final = 0.01  # v1 this unlikely to fail so often at its own rate: judge the slice on the split too
SHARED_P: Final = 1e-3  # v1 this unlikely to fail so often at twice its rate: a shared failure
# No concurrent baseline: v1 over this slice and the two before could not have shown a failure at the
# rate v2 shows (fewer than BASELINE_EVENTS errors expected on v1 had it failed alike, or fewer than
# 1/BASELINE_SHARE of v2's requests, so it would show far fainter than on v2): a shared failure
# cannot be told apart, so such a slice adds at most threshold / UNBASELINED_SLICES to the test (only
# a failure sustained that long rolls back; a shared outage lasts minutes) and holds the promotion.
BASELINE_EVENTS: Final = 6.0
BASELINE_SHARE: Final = 4
UNBASELINED_SLICES: Final = 8
# A thin concurrent baseline: v1's requests in the slice are mostly its answers to shadow copies (it
# serves little else), no more than v2's own reads. A shared failure then shows on v1 as faintly as
# chance allows (a 5 % outage over three minutes at a request a second: ~5 errors expected on v1, 1
# seen in 3 % of outages) and looks like v2's alone. A shared outage of a few minutes straddles three
# slices, so such a slice adds at most threshold / THIN_BASELINE_SLICES: a rollback needs a fourth.
THIN_BASELINE_SLICES: Final = 4


@dataclass(frozen=True, slots=True)
class CheckSpec:
    name: str  # errors:read, errors:write, errors:webhook, page, latency, mismatch
    what: str  # what is counted, for the reasons: "errors", "slow requests", "mismatches"
    tolerance: float  # tolerable = factor * v1's rate + tolerance
    detect: float  # the smallest harm worth rolling back for, beyond the tolerable rate
    grid: tuple[float, ...]  # alternatives, as multiples of `detect`
    threshold: float
    min_samples: int  # v2's samples needed in a recent window before it can pass
    proof: float = 0.0  # promotion: v2's rate is shown below tolerable + proof (x tolerable if relative)
    factor: float = 1.0
    against_v1: bool = True
    gate: bool = False  # promotion: the cutover gate's rule (the match rate, a point estimate) instead
    gate_window_s: float = 0.0  # gate: a rollback also needs the gate's refusal over this window...
    relative: bool = False  # `detect` is a share of the tolerable rate, not an absolute rate
    severe: bool = False
    slices: int = SLICES_TO_ROLL_BACK  # a slice adds at most threshold / slices to the test

    def increments(self, p0: float) -> tuple[float, ...]:
        return _increments(self.detect * p0 if self.relative else self.detect, self.grid)


@lru_cache(maxsize=4096)
def _increments(unit: float, grid: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(unit * g for g in grid)


class CountCheck:
    """The folded state of one sequential count test."""

    __slots__ = (
        "buckets",
        "cusum",
        "last_p0",
        "last_q",
        "last_shared_s",
        "last_unbaselined_s",
        "now_elevated",
        "now_local",
        "now_shared",
        "pool_events",
        "pool_total",
        "prior_events",
        "prior_total",
        "recent",
        "shared_slices",
        "slices",
        "spec",
        "tables",
        "tables_for",
        "thin_slices",
        "unbaselined_slices",
        "v1_slices",
        "v2_events",
        "v2_total",
        "var_den",
        "var_num",
    )

    def __init__(self, spec: CheckSpec) -> None:
        self.spec = spec
        self.cusum = [0.0] * len(spec.grid)
        self.pool_events = self.pool_total = 0  # v1 in the same slices, shared failures left out
        self.prior_events, self.prior_total = 0.0, 0.0
        self.var_num = self.var_den = 0.0  # extra-binomial variance of v1's per-slice counts
        self.v2_events = self.v2_total = 0
        self.v1_slices = self.slices = self.shared_slices = 0
        self.last_shared_s: float | None = None
        self.unbaselined_slices = 0  # slices where v2 failed with no concurrent v1 to tell a shared failure
        self.thin_slices = 0  # slices judged against v1's answers to shadow copies alone (THIN_BASELINE_SLICES)
        self.last_unbaselined_s: float | None = None
        self.buckets = Buckets()
        self.recent: collections.deque[tuple[int, int, int, int]] = collections.deque(maxlen=5)  # slices
        self.last_p0 = self.last_q = 0.0
        self.now_shared, self.now_local, self.now_elevated = False, 0.0, False  # this slice's, for the routes
        # p0 -> (increments, llr_table) for `tables_for` (the spec they were computed for): a soak meets a
        # few hundred p0s (rates are rounded up to a grid), each looked up once a minute
        self.tables: dict[float, tuple[tuple[float, ...], tuple[tuple[float, ...], tuple[float, ...]]]] = {}
        self.tables_for = spec

    # -- folding ---------------------------------------------------------------------------------

    def set_prior(self, events: float, total: float) -> None:
        """v1's rate before the soak (or an assumed one), weighing at most PRIOR_CAP requests."""
        if total > PRIOR_CAP:
            events, total = events * PRIOR_CAP / total, PRIOR_CAP
        self.prior_events, self.prior_total = events, total

    def pooled(self) -> tuple[float, float]:
        """v1's rate over the soak so far with the prior, and how many requests it rests on."""
        total = self.pool_total + self.prior_total
        if total <= 0:
            return 0.0, 0.0
        return (self.pool_events + self.prior_events) / total, total

    def observe(self, end_s: float, x1: int, n1: int, x2: int, n2: int,
                pooled: tuple[float, float] | None = None, *, shared: bool = False, local: float = 0.0,
                elevated: bool = False, whole: tuple[int, int] = (0, 0), thin: bool = False) -> None:
        """Fold one slice in: v1's x1 events of n1, v2's x2 of n2. `pooled` overrides v1's rate (latency);
        `shared`, `local` and `elevated` come from the check over every route: a route too thin to show
        a shared failure on its own is told by the whole (`local`: v1's credible rate in this slice;
        `whole`: v1's and v2's requests on every route over this slice and the two before: v1 there would
        show a shared failure too; `thin`: v1's requests in this slice are mostly its answers to shadow
        copies, see THIN_BASELINE_SLICES)."""
        spec = self.spec
        self.slices += 1
        self.now_shared, self.now_local, self.now_elevated = False, 0.0, False
        if n1 == 0 and n2 == 0:  # nothing to judge nor to pool (a quiet route)
            self.recent.append((0, 0, 0, 0))
            return
        if spec.against_v1:
            if pooled is None:  # self.pooled(), inline: this runs for every check every minute
                n_pool = self.pool_total + self.prior_total
                q_pool = (self.pool_events + self.prior_events) / n_pool if n_pool > 0 else 0.0
                n_pool = n_pool if n_pool > 0 else 0.0
            else:
                q_pool, n_pool = pooled
            q = q_pool + PLUG_IN_Z * math.sqrt(q_pool * (1 - q_pool) / n_pool) if n_pool > 0 else 1.0
            if n1 > 0:
                self.v1_slices += 1
                expected = n1 * q_pool
                if x1 > expected:  # v1 itself worse in this slice: its lower bound, if above, is the baseline
                    local = max(local, wilson(x1, n1, 1.645)[0])
                    shared = shared or self._shared(x1, n1, x2, n2, q_pool)
                if expected >= 1.0 and not shared:
                    self.var_num += (x1 - expected) ** 2 - expected * (1 - q_pool)
                    self.var_den += expected * expected
            q = max(q, local)
            self.now_shared, self.now_local = shared, local
            p0 = rounded_up(spec.factor * q + spec.tolerance)
        else:
            q, p0 = 0.0, rounded_up(spec.tolerance)
            own_rate = (self.v2_events + 1) / (self.v2_total + 100)
            expected = n2 * own_rate
            if expected >= 1.0:
                self.var_num += (x2 - expected) ** 2 - expected * (1 - own_rate)
                self.var_den += expected * expected
        self.last_p0, self.last_q = p0, q
        if shared:
            self.shared_slices += 1
            self.last_shared_s = end_s
        elif n2 > 0:
            extra = self.var_num / (self.var_den + 50.0) if self.var_num > 0 else 0.0
            if self.tables_for is not spec:  # the spec was replaced (latency's factor, every few minutes)
                old = self.tables_for
                if (old.detect, old.grid, old.relative) != (spec.detect, spec.grid, spec.relative):
                    self.tables = {}  # the alternatives changed: start the cache again
                self.tables_for = spec
            entry = self.tables.get(p0)
            if entry is None:
                entry = self.tables[p0] = (spec.increments(p0), llr_table(p0, spec.increments(p0)))
            increments, table = entry
            elevated = elevated or (spec.against_v1 and n1 > 0 and x1 > 0 and self._v1_elevated(x1, n1, q_pool))
            self.now_elevated = elevated
            ceiling = spec.threshold / (max(spec.slices, THIN_BASELINE_SLICES) if thin else spec.slices)
            self.thin_slices += thin
            if spec.against_v1 and x2 > n2 * p0 and self._unbaselined(n1, x2, n2, p0, whole):
                ceiling = spec.threshold / max(spec.slices, UNBASELINED_SLICES)
                if poisson_sf(x2, n2 * p0) < SHARED_P:  # v2 credibly failing, and nothing to compare it with
                    self.unbaselined_slices += 1
                    self.last_unbaselined_s = end_s
            if x2 == 0 and not any(self.cusum):
                pass  # no v2 event: every step is negative and every statistic stays at its floor, zero
            elif elevated:
                conditional_step(self.cusum, x1, n1, x2, n2, q_pool, p0, increments, table, 1.0 + n2 * p0 * extra,
                                 ceiling)
            else:
                cusum_step(self.cusum, x2, n2, table, 1.0 + n2 * p0 * extra, ceiling)
        if not shared and pooled is None:
            self.pool_events += x1
            self.pool_total += n1
        self.v2_events += x2
        self.v2_total += n2
        self.buckets.add(int(end_s // BUCKET_S), x1, n1, x2, n2)
        self.recent.append((x1, n1, x2, n2))

    def _unbaselined(self, n1: int, x2: int, n2: int, p0: float, whole: tuple[int, int]) -> bool:
        """v2 fails above the tolerable rate in this slice, but over this slice and the two before, on
        this route or on all (`whole`: v1's and v2's requests), v1 answered too few requests to have
        shown a failure at that rate (fewer than BASELINE_EVENTS errors expected, or under
        1/BASELINE_SHARE of v2's requests: a shared failure would show that much fainter on v1)."""
        if n2 == 0 or x2 <= n2 * p0:
            return False
        _, b, _, d = self._before()
        rate, n1, v2_total = x2 / n2, n1 + b, n2 + d
        return not any(v1 * rate >= BASELINE_EVENTS and v1 * BASELINE_SHARE >= v2
                       for v1, v2 in ((n1, v2_total), whole))

    def _v1_elevated(self, x1: int, n1: int, q_pool: float) -> bool:
        """v1 credibly (p < 1 %) above its rate over this slice and the two before it: maybe a shared
        failure too thin to prove, so this slice is judged on the split between v1 and v2 as well."""
        if x1 == 0:
            return False
        a, b, _, _ = self._before()
        x1, n1 = x1 + a, n1 + b
        expected = n1 * q_pool
        return x1 >= 3 and x1 > expected + 2 * math.sqrt(expected) and poisson_sf(x1, expected) < ELEVATED_P

    def _shared(self, x1: int, n1: int, x2: int, n2: int, q_pool: float) -> bool:
        """v1 and v2 both failing at over twice v1's rate, over this slice and the two before it (a
        shared failure shows on v1 too; three slices see it at a request a second)."""
        a, b, c, d = self._before()
        x1, n1, x2, n2 = x1 + a, n1 + b, x2 + c, n2 + d
        expected = n1 * q_pool
        return (x1 >= 3 and x1 > 2 * expected + 3 * math.sqrt(2 * expected) and x2 > 2 * n2 * q_pool
                and poisson_sf(x1, 2 * expected) < SHARED_P)

    def extra_variance(self) -> float:
        """c^2 in Var(x) = n p (1 + n p c^2): the clustering of events, from the reference's slices
        (shrunk towards none by 50 slices' worth); each slice's evidence is divided by 1 + n p c^2."""
        return self.var_num / (self.var_den + 50.0) if self.var_num > 0 else 0.0

    # -- judging (never changes the state) ------------------------------------------------------

    def statistic(self) -> tuple[float, float]:
        """The largest CUSUM and the alternative (as a rate increment beyond p0) it is for."""
        best = max(range(len(self.cusum)), key=self.cusum.__getitem__)
        return self.cusum[best], self.spec.increments(self.last_p0 or 0.01)[best]

    def failed(self) -> bool:
        """The test reached its threshold (and, for the gate's check, the gate itself would refuse)."""
        return max(self.cusum) >= self.spec.threshold and (not self.spec.gate or self.gate_refuses())

    def gate_refuses(self) -> bool:
        """The cutover gate's rule over its window, ending at the newest slice: at least its minimum
        comparisons, and a match rate below what it admits. A rate the gate admits never rolls back."""
        if not self.buckets.index:
            return False
        last = self.buckets.index[-1]
        _, _, events, total = self.buckets.since(last - int(self.spec.gate_window_s // BUCKET_S) + 1)
        if total < self.spec.min_samples:
            return False
        return MatchRate(matches=total - events, mismatches=events).rate < 1.0 - self.spec.tolerance

    def window(self, now_s: float, seconds: float) -> Window:
        return Window(seconds, *self.buckets.since(int((now_s - seconds) // BUCKET_S) + 1))

    def tolerable(self, window: Window) -> float:
        """The tolerable rate for a recent window: from v1 in the same minutes when they are credibly
        (their lower 95 % bound) worse than v1 over the soak, else from v1 over the soak."""
        if not self.spec.against_v1:
            return self.spec.tolerance
        q_pool, _ = self.pooled()
        q = wilson(window.v1_events, window.v1_total, 1.645)[0] if window.v1_total else 0.0
        return self.spec.factor * max(q, q_pool) + self.spec.tolerance

    def limit(self, window: Window) -> float:
        """The rate v2's upper bound must stay under, over a recent window, to pass."""
        tolerable = self.tolerable(window)
        return tolerable + (self.spec.proof * tolerable if self.spec.relative else self.spec.proof)

    def needed(self, window: Window) -> int:
        """v2's samples a window needs before a v2 as good as v1 could pass in it."""
        if self.spec.gate:
            return self.spec.min_samples
        q = self.pooled()[0] * self.spec.factor if self.spec.against_v1 else self.spec.tolerance / 2
        return max(self.spec.min_samples, needed_samples(rounded_up(q), rounded_up(self.limit(window))))

    def recent_requests(self) -> tuple[int, int]:
        """v1's and v2's requests over the newest three slices."""
        recent = self.recent
        v1 = v2 = 0
        for i in range(max(0, len(recent) - 3), len(recent)):  # a deque is indexed, not copied
            row = recent[i]
            v1, v2 = v1 + row[1], v2 + row[3]
        return v1, v2

    def _before(self) -> tuple[int, int, int, int]:
        """The sums over the two slices before this one (v1 events, v1 total, v2 events, v2 total)."""
        recent = self.recent
        if len(recent) >= 2:
            (a, b, c, d), (e, f, g, h) = recent[-2], recent[-1]
            return a + e, b + f, c + g, d + h
        return recent[-1] if recent else (0, 0, 0, 0)

    def recent_pass(self, window: Window) -> bool:
        """Healthy over this window on its own: enough of v2's samples, and the upper 95 % bound of
        v2's rate below the limit (for mismatches: the cutover gate's own rule, the match rate)."""
        if window.v2_total < self.needed(window):
            return False
        if self.spec.gate:
            rate = MatchRate(matches=window.v2_total - window.v2_events, mismatches=window.v2_events)
            return rate.rate >= 1.0 - self.spec.tolerance
        return upper_bound(window.v2_events, window.v2_total) < self.limit(window)

    # -- persistence ----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"cusum": self.cusum, "pool": [self.pool_events, self.pool_total],
                "prior": [self.prior_events, self.prior_total], "var": [self.var_num, self.var_den],
                "v2": [self.v2_events, self.v2_total],
                "slices": [self.slices, self.v1_slices, self.shared_slices], "last_shared_s": self.last_shared_s,
                "unbaselined": [self.unbaselined_slices, self.last_unbaselined_s], "thin": self.thin_slices,
                "buckets": self.buckets.to_json(), "recent": list(self.recent), "p0": [self.last_p0, self.last_q]}

    @classmethod
    def from_json(cls, spec: CheckSpec, data: dict[str, Any]) -> CountCheck:
        check = cls(spec)
        if len(data.get("cusum", ())) == len(spec.grid):
            check.cusum = [float(v) for v in data["cusum"]]
        check.pool_events, check.pool_total = (int(v) for v in data["pool"])
        check.prior_events, check.prior_total = (float(v) for v in data["prior"])
        check.var_num, check.var_den = (float(v) for v in data["var"])
        check.v2_events, check.v2_total = (int(v) for v in data["v2"])
        check.slices, check.v1_slices, check.shared_slices = (int(v) for v in data["slices"])
        check.last_shared_s = data.get("last_shared_s")
        check.unbaselined_slices, check.last_unbaselined_s = data.get("unbaselined", (0, None))
        check.thin_slices = int(data.get("thin", 0))
        check.buckets.load(data["buckets"])
        check.recent.extend(tuple(int(v) for v in r) for r in data["recent"])  # type: ignore[misc]
        check.last_p0, check.last_q = (float(v) for v in data["p0"])
        return check

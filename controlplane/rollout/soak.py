"""A tenant's soak folded into its checks, slice by slice: the decision engine's memory.

`Soak.fold(slice)` is the only place evidence enters. Errors are checked per route (reads, payment
creation, payment notifications) and once more over all routes for severe harm (the page rule);
v1's baseline is its traffic over the same minutes plus its answers to the tenant's mirrored reads.
Latency is the share of v2's requests slower than the histogram bound at v1's p99 over the same
minutes (when v1 answers mostly the shadow copies: v2's and v1's latency on those mirrored reads, the
same requests in the same minutes); the bounds are the routers' fixed list, so v1's pooled latency
never starts again. Shadow mismatches are judged against the level the cutover gate admits. The
decision (decide.py) reads a Soak and never changes it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final

from controlplane.rollout.checks import CheckSpec, CountCheck
from controlplane.rollout.evidence import History, Slice
from controlplane.rollout.stats import survival_at
from controlplane.rollout.windows import BUCKET_S

LATENCY_MIN_POOL: Final = 500  # v1 requests with latency before its p99 bound is trusted
LATENCY_QUANTILE_SHARE: Final = 0.01  # the bound: the slowest bucket bound v1 exceeds at least 1 % of the time
HOLD_AFTER_SHARED_S: Final = 1800.0
VERSION: Final = 2


@dataclass(frozen=True, slots=True)
class Specs:
    """The checks of one soak, in the order they are reported."""

    errors: tuple[CheckSpec, CheckSpec, CheckSpec]  # by ROUTES
    page: CheckSpec
    latency: CheckSpec
    mismatch: CheckSpec
    latency_ratio: float  # v2 may be this much slower than v1 at the tail
    assumed_baseline: float  # v1's rate assumed when there is no history at all
    page_min_requests: int  # the page rule's minimum sample over its last five slices...
    page_min_errors: int
    page_excess: float  # ...and the smallest excess error rate it pages for


class LatencyTail:
    """v1's latency histogram over the soak (pooled), the bound at its p99, and the tolerance as a
    share: if v2 were `ratio` times slower than v1, this share of it would exceed the bound."""

    __slots__ = ("above", "bounds", "chosen_in", "factor", "index", "total")

    def __init__(self) -> None:
        self.bounds: tuple[float, ...] = ()
        self.above: list[float] = []
        self.total = 0.0
        self.index: int | None = None
        self.factor = 1.0
        self.chosen_in = -1.0

    def add(self, bounds: tuple[float, ...], above: tuple[int, ...] | list[float], total: float) -> None:
        if bounds != self.bounds:  # the routers' buckets changed: start the pool again
            self.bounds, self.above, self.total, self.index = bounds, [0.0] * len(bounds), 0.0, None
        self.above = [a + count for a, count in zip(self.above, above, strict=True)]
        self.total += total

    def choose(self, ratio: float) -> bool:
        """Pick the bound (from the pool so far); True if it changed."""
        if self.total < LATENCY_MIN_POOL:
            return False
        candidates = [i for i, a in enumerate(self.above) if a >= LATENCY_QUANTILE_SHARE * self.total]
        index = candidates[-1] if candidates else 0
        share = max(self.above[index], 0.5) / self.total
        self.factor = max(1.0, survival_at(self.bounds, self.above, self.total, self.bounds[index] / ratio) / share)
        changed, self.index = index != self.index, index
        return changed

    def to_json(self) -> dict[str, Any]:
        return {"bounds": list(self.bounds), "above": self.above, "total": self.total, "index": self.index,
                "factor": self.factor}

    def load(self, data: dict[str, Any]) -> None:
        self.bounds, self.above = tuple(data["bounds"]), [float(a) for a in data["above"]]
        self.total, self.index, self.factor = float(data["total"]), data["index"], float(data["factor"])


class Soak:
    """Every check's state for one tenant's soak, and what the decisions need besides."""

    def __init__(self, specs: Specs, started_s: float) -> None:
        self.specs = specs
        self.started_s = started_s
        self.errors = [CountCheck(spec) for spec in specs.errors]
        self.page = CountCheck(specs.page)
        self.latency = CountCheck(specs.latency)
        self.mismatch = CountCheck(specs.mismatch)
        self.tail = LatencyTail()
        self.read_until_s = started_s  # the end of the newest slice folded in
        self.last_traffic_s = started_s  # the end of the newest slice in which v2 answered anything
        self.baseline = "assumed"  # history | assumed: the prior for v1's rate
        self.last_hold: str | None = None  # the kind of the last hold, so a hold is notified once
        self.primed = False  # v1's prior is set (start)
        self.v1_shadow_answers = 0  # v1's answers to mirrored copies folded into its baseline
        self.latency_paired_slices = 0  # latency check's slices judged on the mirrored pairs (v1 idle)

    @property
    def checks(self) -> list[CountCheck]:
        return [self.page, *self.errors, self.latency, self.mismatch]

    def start(self, history: History | None) -> None:
        """Set v1's prior: its history before the soak, else the assumed rate (weighing 200 requests)."""
        self.primed = True
        for i, check in enumerate(self.errors):
            if history is not None and history.requests[i] > 0:
                check.set_prior(history.errors[i], history.requests[i])
            else:
                check.set_prior(self.specs.assumed_baseline * 200, 200)
        if history is not None and sum(history.requests) > 0:
            self.baseline = "history"
            self.page.set_prior(sum(history.errors), sum(history.requests))
        else:
            self.page.set_prior(self.specs.assumed_baseline * 200, 200)

    def fold(self, s: Slice) -> None:
        if s.end_s <= self.read_until_s:
            return  # already seen (a source may return an overlapping interval)
        self.read_until_s = s.end_s
        v2n, v2e, v1n, v1e = s.v2_requests, s.v2_errors, s.v1_requests, s.v1_errors
        thin = s.v1_shadow[0] > v1n[0] + v1n[1] + v1n[2]  # v1 answers mostly shadow copies: as few as v2's reads
        if s.v1_shadow[0]:  # v1's answers to the mirrored reads: v1 over the same minutes, the same requests
            self.v1_shadow_answers += s.v1_shadow[0]
            v1n = (v1n[0] + s.v1_shadow[0], v1n[1], v1n[2])
            v1e = (v1e[0] + s.v1_shadow[1], v1e[1], v1e[2])
        if v2n[0] or v2n[1] or v2n[2]:
            self.last_traffic_s = s.end_s
        page = self.page  # over every route first: it tells the thin routes of a shared failure
        page.observe(s.end_s, v1e[0] + v1e[1] + v1e[2], v1n[0] + v1n[1] + v1n[2], v2e[0] + v2e[1] + v2e[2],
                     v2n[0] + v2n[1] + v2n[2], thin=thin)
        whole = page.recent_requests()
        for i, check in enumerate(self.errors):
            check.observe(s.end_s, v1e[i], v1n[i], v2e[i], v2n[i], shared=page.now_shared, local=page.now_local,
                          elevated=page.now_elevated, whole=whole, thin=thin)
        latency, paired = s.latency, s.shadow_latency
        on_pairs = paired is not None and paired.v1_requests > 0 and (latency is None or
                                                                      latency.v1_requests < paired.v1_requests)
        if on_pairs:  # v1 answers mostly the shadow copies: v2 and v1 on the same (mirrored) reads
            latency = paired
        if latency is not None:
            tail = self.tail
            if tail.bounds and latency.bounds == tail.bounds and tail.index is not None:
                j = tail.index
                self.latency_paired_slices += on_pairs
                self.latency.observe(s.end_s, latency.v1_above[j], latency.v1_requests, latency.v2_above[j],
                                     latency.v2_requests, (tail.above[j] / tail.total, tail.total))
            tail.add(latency.bounds, latency.v1_above, latency.v1_requests)
            bucket = s.end_s // BUCKET_S  # the bound is chosen again every ten minutes
            if tail.index is None or bucket != tail.chosen_in:
                tail.chosen_in = bucket
                if tail.choose(self.specs.latency_ratio):
                    self.latency.buckets.clear()  # a window's counts must be against one bound
                self.latency.spec = _with_factor(self.latency.spec, tail.factor)
        shadow = s.shadow
        if shadow.matches or shadow.mismatches:
            self.mismatch.observe(s.end_s, 0, 0, shadow.mismatches, shadow.matches + shadow.mismatches)

    def shared_since(self, now_s: float) -> float | None:
        """When v1 and v2 last failed together, if within the hold that follows it."""
        times = [c.last_shared_s for c in (self.page, *self.errors, self.latency) if c.last_shared_s is not None]
        latest = max(times, default=None)
        return latest if latest is not None and now_s - latest < HOLD_AFTER_SHARED_S else None

    def unbaselined_since(self, now_s: float) -> float | None:
        """When v2 last failed in minutes with no concurrent v1 to compare (neither v1's traffic nor its
        answers to shadow copies), if within the hold that follows it: maybe a shared failure."""
        times = [c.last_unbaselined_s for c in (self.page, *self.errors) if c.last_unbaselined_s is not None]
        latest = max(times, default=None)
        return latest if latest is not None and now_s - latest < HOLD_AFTER_SHARED_S else None

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, "started_s": self.started_s, "read_until_s": self.read_until_s,
                "last_traffic_s": self.last_traffic_s, "baseline": self.baseline, "last_hold": self.last_hold,
                "primed": self.primed, "v1_shadow_answers": self.v1_shadow_answers,
                "latency_paired_slices": self.latency_paired_slices,
                "checks": {c.spec.name: c.to_json() for c in self.checks}, "tail": self.tail.to_json()}

    @classmethod
    def from_json(cls, specs: Specs, data: dict[str, Any]) -> Soak | None:
        """The soak as last saved, or None if it was saved by an older engine (start again)."""
        if data.get("version") != VERSION:
            return None
        soak = cls(specs, float(data["started_s"]))
        soak.read_until_s, soak.last_traffic_s = float(data["read_until_s"]), float(data["last_traffic_s"])
        soak.baseline, soak.last_hold, soak.primed = data["baseline"], data.get("last_hold"), bool(data["primed"])
        soak.v1_shadow_answers = int(data.get("v1_shadow_answers", 0))
        soak.latency_paired_slices = int(data.get("latency_paired_slices", 0))
        saved = data["checks"]
        soak.errors = [CountCheck.from_json(spec, saved[spec.name]) for spec in specs.errors]
        soak.page = CountCheck.from_json(specs.page, saved[specs.page.name])
        soak.latency = CountCheck.from_json(specs.latency, saved[specs.latency.name])
        soak.mismatch = CountCheck.from_json(specs.mismatch, saved[specs.mismatch.name])
        soak.tail.load(data["tail"])
        soak.latency.spec = _with_factor(specs.latency, soak.tail.factor)
        return soak


def _with_factor(spec: CheckSpec, factor: float) -> CheckSpec:
    return spec if spec.factor == factor else replace(spec, factor=factor)

"""Every metric the router exports, built against an injected registry.

With several worker processes (`--workers N`) the values live in prometheus_client's multiprocess
files and /metrics aggregates them, so totals are correct whichever worker answers the scrape.
"""

from __future__ import annotations

import bisect
import collections
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

from controlplane.config.model import BACKENDS

UNKNOWN_TENANT: Final = "unknown"
NO_BACKEND: Final = "none"

# Latency buckets in seconds, dense where a proxied payment API lives (1 ms to 30 s).
DURATION_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)

CODE_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
ROLLOUT_PHASES: Final = ("soaking", "promoted", "rolled_back", "held")


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition_registry(own: CollectorRegistry) -> CollectorRegistry:
    """The registry /metrics should render: the worker's own, or the aggregate of all workers."""
    if not multiprocess_enabled():
        return own
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


SHADOW_FLUSH_S: Final = 1.0


@dataclass(slots=True)
class _LatencyTally:
    size: int
    buckets: list[int] = field(init=False)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.buckets = [0] * self.size


def _observe_many(child: Any, tally: _LatencyTally) -> None:
    """Add many observations to a histogram child at once (its sum and one bucket per bound)."""
    buckets, total = getattr(child, "_buckets", None), getattr(child, "_sum", None)
    if buckets is None or total is None or len(buckets) != len(tally.buckets):
        # Not the layout this was written against: observe one representative value per observation.
        bounds = (*DURATION_BUCKETS, DURATION_BUCKETS[-1] * 2)
        for bound, n in zip(bounds, tally.buckets, strict=True):
            for _ in range(n):
                child.observe(bound)
        return
    for bucket, n in zip(buckets, tally.buckets, strict=True):
        if n:
            bucket.inc(n)
    total.inc(tally.total)


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "dualstack_requests", "Requests answered, by tenant, serving backend and status class.",
            ["tenant", "backend", "code_class"], registry=registry,
        )
        self.duration = Histogram(
            "dualstack_request_duration_seconds",
            "Time from request received to response complete, by tenant and backend.",
            ["tenant", "backend"], buckets=DURATION_BUCKETS, registry=registry,
        )
        self.upstream_errors = Counter(
            "dualstack_upstream_errors",
            "Upstream failures by kind: connect, connect_timeout, timeout, reset, client_disconnect.",
            ["tenant", "backend", "kind"], registry=registry,
        )
        self.untrusted_routing_headers = Counter(
            "dualstack_untrusted_routing_headers",
            "Requests from untrusted peers that carried X-Tenant-Slug (ignored).",
            registry=registry,
        )
        self.tenant_backend = Gauge(
            "dualstack_tenant_backend", "1 for the backend now serving the tenant, 0 for the other.",
            ["tenant", "backend"], registry=registry, multiprocess_mode="livemostrecent",
        )
        self.config_generation = Gauge(
            "dualstack_config_generation", "Successful routing-file loads since the router started.",
            registry=registry, multiprocess_mode="livemostrecent",
        )
        self.config_last_reload_success = Gauge(
            "dualstack_config_last_reload_success",
            "1 if the last reload attempt succeeded, 0 if the router kept the previous config.",
            registry=registry, multiprocess_mode="livemostrecent",
        )
        self.config_last_reload_timestamp = Gauge(
            "dualstack_config_last_reload_timestamp_seconds",
            "Unix time of the last reload attempt.",
            registry=registry, multiprocess_mode="livemostrecent",
        )
        self.config_issues = Gauge(
            "dualstack_config_issues", "Problems found in the routing file by the last reload attempt.",
            registry=registry, multiprocess_mode="livemostrecent",
        )
        self.locks_refresh_success = Gauge(
            "dualstack_rollout_locks_refresh_success",
            "1 if the last read of rollback locks from the state database succeeded (0: last known kept).",
            registry=registry, multiprocess_mode="livemostrecent",
        )
        self.locks_active = Gauge(
            "dualstack_rollout_locks", "Tenants pinned by a rollback lock, overriding the routing file.",
            registry=registry, multiprocess_mode="livemostrecent",
        )
        self.rollout_phase = Gauge(
            "dualstack_rollout_phase", "1 for the phase each tenant's move to v2 is in (soaking, promoted, "
            "rolled_back, held).", ["tenant", "phase"], registry=registry, multiprocess_mode="livemostrecent",
        )
        self.rollout_soak_started = Gauge(
            "dualstack_rollout_soak_started_timestamp_seconds", "When the tenant's soak on v2 started.",
            ["tenant"], registry=registry, multiprocess_mode="livemostrecent",
        )
        self.rollout_last_decision = Gauge(
            "dualstack_rollout_last_decision_timestamp_seconds", "When the decider last decided, by its action.",
            ["tenant", "action"], registry=registry, multiprocess_mode="livemostrecent",
        )
        self.background_dropped = Counter(
            "dualstack_background_tasks_dropped",
            "Background tasks refused because their pool was full or closed.",
            ["pool", "reason"], registry=registry,
        )
        self.shadow_requests = Counter(
            "dualstack_shadow_requests", "Shadow copies by outcome: sent, dropped, error, timeout.",
            ["tenant", "result"], registry=registry,
        )
        self.shadow_drops = Counter(
            "dualstack_shadow_dropped",
            "Copies that should have been mirrored but were not, by reason (queue_full, body_too_large, "
            "response_streamed).", ["tenant", "reason"], registry=registry,
        )
        self.shadow_skips = Counter(
            "dualstack_shadow_skipped", "Requests not mirrored by design, by reason (not_sampled, admin, "
            "route_not_mirrored, write_to_v1, delivered_to_both).", ["tenant", "reason"], registry=registry,
        )
        self.shadow_comparisons = Counter(
            "dualstack_shadow_comparisons", "Primary-vs-shadow comparisons: match, mismatch, noise.",
            ["tenant", "endpoint", "result"], registry=registry,
        )
        self.shadow_latency_seconds = Histogram(
            "dualstack_shadow_latency_seconds", "Latency of mirrored request pairs, by side (primary, shadow).",
            ["tenant", "side"], buckets=DURATION_BUCKETS, registry=registry,
        )
        self.order_fallbacks = Counter(
            "dualstack_order_fallbacks", "Order reads the serving backend did not know, asked of the other: "
            "served, not_found, error.", ["tenant", "result"], registry=registry,
        )
        self.webhook_copies = Counter(
            "dualstack_webhook_copies", "Midtrans notifications also delivered to the other backend: accepted, "
            "refused (4xx), failed, answered (its answer went to Midtrans).", ["tenant", "backend", "result"],
            registry=registry,
        )
        # Label children are looked up once per label set, not per request.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._tally_requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self._tally_comparisons: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._tally_latency: dict[tuple[str, str], _LatencyTally] = {}

    def observe(self, tenant: str, backend: str, status: int, seconds: float) -> None:
        code_class = CODE_CLASSES[min(max(status // 100, 1), 5) - 1]
        self._child(self.requests, tenant, backend, code_class).inc()
        self._child(self.duration, tenant, backend).observe(seconds)

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def rollouts_seen(self, rollouts: Mapping[str, Any]) -> None:
        """Rollout phases and decisions read from the state database (by proxy/locks.py)."""
        for tenant, view in rollouts.items():
            for phase in ROLLOUT_PHASES:
                self.rollout_phase.labels(tenant, phase).set(1 if view.phase == phase else 0)
            self.rollout_soak_started.labels(tenant).set(view.soak_started_s)
            if view.last_action is not None and view.last_decision_s is not None:
                self.rollout_last_decision.labels(tenant, view.last_action).set(view.last_decision_s)

    def shadow_request(self, tenant: str, result: str) -> None:
        self._tally_requests[(tenant, result)] += 1

    def shadow_dropped(self, tenant: str, reason: str) -> None:
        self.shadow_requests.labels(tenant, "dropped").inc()
        self.shadow_drops.labels(tenant, reason).inc()

    def shadow_skipped(self, tenant: str, reason: str) -> None:
        self.shadow_skips.labels(tenant, reason).inc()

    def shadow_comparison(self, tenant: str, endpoint: str, result: str) -> None:
        self._tally_comparisons[(tenant, endpoint, result)] += 1

    def shadow_latency(self, tenant: str, primary_s: float, shadow_s: float) -> None:
        for side, seconds in (("primary", primary_s), ("shadow", shadow_s)):
            tally = self._tally_latency.get((tenant, side))
            if tally is None:
                tally = self._tally_latency[(tenant, side)] = _LatencyTally(len(DURATION_BUCKETS) + 1)
            tally.buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
            tally.total += seconds

    def flush_shadow(self) -> None:
        """Add the shadow outcomes tallied since the last flush to the exported metrics.

        Shadow copies are counted in plain dicts on their path and exported in bulk (every
        SHADOW_FLUSH_S): with several workers, every metric update is a write to shared memory,
        which cost more per copy than the rest of its comparison."""
        requests, self._tally_requests = self._tally_requests, collections.Counter()
        comparisons, self._tally_comparisons = self._tally_comparisons, collections.Counter()
        latency, self._tally_latency = self._tally_latency, {}
        for (tenant, result), n in requests.items():
            self._child(self.shadow_requests, tenant, result).inc(n)
        for (tenant, endpoint, result), n in comparisons.items():
            self._child(self.shadow_comparisons, tenant, endpoint, result).inc(n)
        for (tenant, side), tally in latency.items():
            _observe_many(self._child(self.shadow_latency_seconds, tenant, side), tally)

    def order_fallback(self, tenant: str, result: str) -> None:
        self.order_fallbacks.labels(tenant, result).inc()

    def webhook_copy(self, tenant: str, backend: str, result: str) -> None:
        self.webhook_copies.labels(tenant, backend, result).inc()

    def upstream_error(self, tenant: str, backend: str, kind: str) -> None:
        self._child(self.upstream_errors, tenant, backend, kind).inc()

    def config_loaded(self, generation: int, at_s: float) -> None:
        self.config_generation.set(generation)
        self.config_last_reload_success.set(1)
        self.config_last_reload_timestamp.set(at_s)
        self.config_issues.set(0)

    def routes_changed(self, serving: Mapping[str, str], previous: Mapping[str, str]) -> None:
        """`serving`: tenant -> the backend now serving it (the file, or a rollback lock)."""
        for slug in previous.keys() - serving.keys():
            for backend in BACKENDS:
                self.tenant_backend.remove(slug, backend)
        for slug, serving_backend in serving.items():
            for backend in BACKENDS:
                self.tenant_backend.labels(slug, backend).set(1 if serving_backend == backend else 0)
                # Series exist at zero from the start: a counter that first appears already at 5
                # shows no increase() in Prometheus, so a tenant's first errors would be invisible.
                for code_class in CODE_CLASSES:
                    self.requests.labels(slug, backend, code_class)
                self.duration.labels(slug, backend)

    def config_rejected(self, issue_count: int, at_s: float) -> None:
        self.config_last_reload_success.set(0)
        self.config_last_reload_timestamp.set(at_s)
        self.config_issues.set(issue_count)

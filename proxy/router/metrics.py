"""Every metric the router exports, built against an injected registry.

With several worker processes (`--workers N`) the values live in prometheus_client's multiprocess
files and /metrics aggregates them, so totals are correct whichever worker answers the scrape. The
cost of that aggregation is the number of series, kept bounded by proxy/router/cardinality.py (the
README's "Metrics cardinality" table): per-tenant detail only for the tenants someone watches.
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controlplane.config.latency_buckets import DURATION_BUCKETS
from controlplane.config.model import BACKENDS, ROUTE_CLASSES, RouteClass
from controlplane.state.rollouts import Phase, RolloutView
from proxy.router.cardinality import Detail

UNKNOWN_TENANT: Final = "unknown"
NO_BACKEND: Final = "none"
NO_ROUTE: Final = "none"  # the route label of a request no tenant was found for

CODE_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
# What the router itself did with a request no backend answered (never a backend's 5xx): the pool or
# the tenant's share of it stayed busy, the client went away or was too slow, the router failed.
ROUTER_OUTCOMES: Final = ("pool_timeout", "tenant_busy", "client_disconnect", "client_timeout", "internal")
# Why a client connection was closed or refused by the router (proxy/router/connections.py).
CONNECTION_CLOSES: Final = ("max_connections", "header_timeout")
ROLLOUT_PHASES: Final = tuple(Phase)  # the state database's phases (controlplane/state/rollouts.py)


SHADOW_FLUSH_S: Final = 1.0


def code_class(status: int) -> str:
    """A status's class label (1xx..5xx; anything out of range is clamped into it)."""
    return CODE_CLASSES[min(max(status // 100, 1), 5) - 1]


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
        # `route` is the request's class (read, write, webhook, admin; none for an unknown tenant): the
        # decider judges payment creation and payment notifications on their own. Bounded: five values.
        self.requests = Counter(
            "dualstack_requests", "Requests answered, by tenant, serving backend, status class and route class.",
            ["tenant", "backend", "code_class", "route"], registry=registry,
        )
        self.duration = Histogram(
            "dualstack_request_duration_seconds",
            "Time from request received to response complete, by tenant (in a rollout, shadowed or moved; "
            "_other for the rest), backend and route class.",
            ["tenant", "backend", "route"], buckets=DURATION_BUCKETS, registry=registry,
        )
        self.upstream_errors = Counter(
            "dualstack_upstream_errors",
            "Upstream failures by kind: connect, connect_timeout, timeout, reset, client_disconnect.",
            ["tenant", "backend", "kind"], registry=registry,
        )
        self.router_outcomes = Counter(
            "dualstack_router_outcomes",
            "Requests the router answered or dropped itself, no backend at fault (counted apart from "
            "dualstack_requests_total): pool_timeout, tenant_busy, client_disconnect, client_timeout, internal, "
            "notification_refused, notification_withheld.",
            ["tenant", "backend", "outcome"], registry=registry,
        )
        self.client_connections = Gauge(
            "dualstack_client_connections", "Open client connections, per router (summed over workers).",
            registry=registry, multiprocess_mode="livesum",
        )
        self.connections_closed = Counter(
            "dualstack_client_connections_closed",
            "Client connections the router refused or cut off: max_connections, header_timeout.",
            ["reason"], registry=registry,
        )
        self.untrusted_routing_headers = Counter(
            "dualstack_untrusted_routing_headers",
            "Requests from untrusted peers that carried X-Tenant-Slug (ignored).",
            registry=registry,
        )
        self.tenant_backend = Gauge(
            "dualstack_tenant_backend", "1 for the backend now serving the tenant, 0 for the other; for the "
            "tenants in a rollout, shadowed or moved (a lock, a flip) since the router started.",
            ["tenant", "backend"], registry=registry, multiprocess_mode="livemostrecent",
        )
        self.tenants = Gauge(
            "dualstack_tenants", "Tenants in the routing table, by the backend now serving them.",
            ["backend"], registry=registry, multiprocess_mode="livemostrecent",
        )
        self.config_generation = Gauge(
            "dualstack_config_generation", "Successful routing-file loads since the router started (the "
            "lowest over its workers: one that lags behind the others shows).",
            registry=registry, multiprocess_mode="livemin",
        )
        self.config_last_reload_success = Gauge(
            "dualstack_config_last_reload_success",
            "1 if the last reload attempt succeeded, 0 if the router kept the previous config (the lowest "
            "over its workers: one that could not take the new snapshot shows 0).",
            registry=registry, multiprocess_mode="livemin",
        )
        self.config_last_reload_timestamp = Gauge(
            "dualstack_config_last_reload_timestamp_seconds",
            "Unix time of the last reload attempt.",
            registry=registry, multiprocess_mode="livemostrecent",
        )
        # livemin: with several workers the oldest run shows, so one stuck watcher is not hidden.
        self.config_watch_last_run = Gauge(
            "dualstack_config_watch_last_run_timestamp_seconds",
            "Unix time the routing-file watcher last finished a poll (every 0.5 s while it is alive).",
            registry=registry, multiprocess_mode="livemin",
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
        self.notifications_refused = Counter(
            "dualstack_notifications_refused", "Midtrans notifications the router refused before any backend saw "
            "them (invalid_signature, inconsistent_status, malformed, too_large, no_key, keys_unavailable, "
            "no_key_source).", ["tenant", "reason"],
            registry=registry,
        )
        self.notifications_withheld = Counter(
            "dualstack_notifications_withheld", "Verified Midtrans notifications the router kept from v1 (as the "
            "serving backend or as a copy): v1_would_misapply (a capture v1 would mark paid). Ops reconcile the "
            "order on v1; the router's log names it.", ["tenant", "reason"],
            registry=registry,
        )
        self.locks_refused = Gauge(
            "dualstack_rollout_locks_refused", "Rollback locks this router refuses to apply: they would send a "
            "tenant to v1, which does not hold its orders (the tenant stays where the routing file says).",
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
            "dualstack_rollout_last_decision_timestamp_seconds", "When the decider last decided, by its action "
            "and verdict (a hold with verdict no_go: v2 fails, and v1 does not hold the tenant).",
            ["tenant", "action", "verdict"], registry=registry, multiprocess_mode="livemostrecent",
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
            "route_not_mirrored, write_to_v1, delivered_to_both, primary_not_modified, and junk the primary "
            "refused: unknown_route, not_an_order_id).", ["tenant", "reason"],
            registry=registry,
        )
        self.shadow_comparisons = Counter(
            "dualstack_shadow_comparisons", "Primary-vs-shadow comparisons: match, mismatch, noise.",
            ["tenant", "endpoint", "result"], registry=registry,
        )
        # By side and the backend that answered it: the shadow side's latency is v1's over the same
        # minutes, to the same requests, when v1 serves nobody else (the decider's latency baseline).
        # Bounded: only the shadowed tenants (watched, cardinality.py), two sides, one backend each
        # (two after a flip).
        self.shadow_latency_seconds = Histogram(
            "dualstack_shadow_latency_seconds", "Latency of mirrored request pairs, by side (primary, shadow) "
            "and the backend that answered it.", ["tenant", "side", "backend"], buckets=DURATION_BUCKETS,
            registry=registry,
        )
        # What each side answered to the mirrored copies (the primary, and the shadow backend to the same
        # requests): the shadow side's answers are v1's over the same minutes when v1 serves nobody else.
        # Bounded: two sides, two backends, five classes.
        self.shadow_answers = Counter(
            "dualstack_shadow_answers", "Answers to mirrored request pairs, by side (primary, shadow), backend "
            "and status class.", ["tenant", "side", "backend", "code_class"], registry=registry,
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
        # Write holds during a cutover (proxy/router/holds.py); a tenant has series once it was held.
        self.write_holds = Counter("dualstack_write_holds", "Write holds this router ended, by tenant and how: "
                                   "released (by the cutover), released_elsewhere (released, but the routing "
                                   "table still served another backend when the hold's bound ran out), expired (on the "
                                   "router's own clock).",
                                   ["tenant", "outcome"], registry=registry)
        self.held_requests = Counter("dualstack_held_requests", "Writes held during a cutover, by tenant and "
                                     "outcome: released, refused (503: over the bound), gone (client left).",
                                     ["tenant", "outcome"], registry=registry)
        self.write_holds_active = Gauge("dualstack_write_holds_active", "Tenants whose writes are held now "
                                        "(summed over workers).", registry=registry, multiprocess_mode="livesum")
        self.write_holds_draining = Gauge("dualstack_write_holds_draining", "Holds a worker began but cannot "
                                          "confirm yet: writes that passed before the hold are still being "
                                          "forwarded (summed over workers).", registry=registry,
                                          multiprocess_mode="livesum")
        self.held_requests_waiting = Gauge("dualstack_held_requests_waiting", "Writes waiting in a hold now.",
                                           registry=registry, multiprocess_mode="livesum")
        self.write_hold_duration = Histogram("dualstack_write_hold_duration_seconds", "How long a worker held a "
                                             "tenant's writes.", buckets=DURATION_BUCKETS, registry=registry)
        self.held_request_wait = Histogram("dualstack_held_request_wait_seconds", "Time a write waited in a "
                                           "hold (the latency a hold adds).", buckets=DURATION_BUCKETS,
                                           registry=registry)
        # Label children are looked up once per label set, not per request.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._tally_requests: collections.Counter[tuple[str, str]] = collections.Counter()
        self._tally_comparisons: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._tally_answers: collections.Counter[tuple[str, str, str, str]] = collections.Counter()
        self._tally_latency: dict[tuple[str, str, str], _LatencyTally] = {}
        self.detail = Detail()
        self._serving: dict[str, str] = {}  # tenant -> serving backend, as routes_changed reported it
        self._backend_shown: set[str] = set()  # the tenants dualstack_tenant_backend has series for
        self._rollouts: dict[str, RolloutView] = {}  # as last exported

    def observe(self, tenant: str, backend: str, status: int, seconds: float, route: RouteClass | None = None) -> None:
        route_label = route or NO_ROUTE
        self._child(self.requests, tenant, backend, code_class(status), route_label).inc()
        self._child(self.duration, self.detail.label(tenant), backend, route_label).observe(seconds)

    def router_outcome(self, tenant: str, backend: str, outcome: str) -> None:
        self._child(self.router_outcomes, tenant, backend, outcome).inc()

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def rollouts_seen(self, rollouts: Mapping[str, RolloutView]) -> None:
        """Rollout phases and decisions read from the state database (by proxy/router/locks.py).

        Only the tenants whose view changed are touched: the database is read every 2 s and may list
        thousands of finished rollouts. A tenant entering a rollout gets its zero series."""
        for tenant, view in rollouts.items():
            if self._rollouts.get(tenant) == view:
                continue
            self._rollouts[tenant] = view
            for phase in ROLLOUT_PHASES:
                self.rollout_phase.labels(tenant, phase).set(1 if view.phase == phase else 0)
            self.rollout_soak_started.labels(tenant).set(view.soak_started_s)
            if view.last_action is not None and view.last_decision_s is not None:
                self.rollout_last_decision.labels(tenant, view.last_action, view.last_verdict or "").set(
                    view.last_decision_s)
        previous, self.detail = self.detail, self.detail.with_rolling({t: v.phase for t, v in rollouts.items()})
        self._zero_series(self.detail.rolling - previous.rolling)
        self._show_backend(self.detail.rolling - previous.rolling)

    def shadowed_tenants(self, tenants: frozenset[str]) -> None:
        """The tenants the routing file mirrors (each reload): they get per-tenant latency."""
        if tenants != self.detail.shadowed:
            previous, self.detail = self.detail, self.detail.with_shadowed(tenants)
            self._show_backend(self.detail.shadowed - previous.shadowed)

    def shadow_request(self, tenant: str, result: str) -> None:
        self._tally_requests[(tenant, result)] += 1

    def shadow_dropped(self, tenant: str, reason: str) -> None:
        self.shadow_requests.labels(tenant, "dropped").inc()
        self.shadow_drops.labels(tenant, reason).inc()

    def shadow_skipped(self, tenant: str, reason: str) -> None:
        self.shadow_skips.labels(tenant, reason).inc()

    def shadow_comparison(self, tenant: str, endpoint: str, result: str) -> None:
        self._tally_comparisons[(tenant, endpoint, result)] += 1

    def shadow_latency(self, tenant: str, backends: tuple[str, str], primary_s: float, shadow_s: float) -> None:
        """One mirrored pair's latencies: (primary, shadow) backends, and each side's seconds."""
        for side, backend, seconds in (("primary", backends[0], primary_s), ("shadow", backends[1], shadow_s)):
            tally = self._tally_latency.get((tenant, side, backend))
            if tally is None:
                tally = self._tally_latency[(tenant, side, backend)] = _LatencyTally(len(DURATION_BUCKETS) + 1)
            tally.buckets[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
            tally.total += seconds

    def shadow_answers_pair(self, tenant: str, backends: tuple[str, str], statuses: tuple[int, int]) -> None:
        """One mirrored pair answered: (primary, shadow) backends and statuses."""
        for side, backend, status in zip(("primary", "shadow"), backends, statuses, strict=True):
            self._tally_answers[(tenant, side, backend, code_class(status))] += 1

    def flush_shadow(self) -> None:
        """Add the shadow outcomes tallied since the last flush to the exported metrics.

        Shadow copies are counted in plain dicts on their path and exported in bulk (every
        SHADOW_FLUSH_S): with several workers, every metric update is a write to shared memory,
        which cost more per copy than the rest of its comparison."""
        requests, self._tally_requests = self._tally_requests, collections.Counter()
        comparisons, self._tally_comparisons = self._tally_comparisons, collections.Counter()
        latency, self._tally_latency = self._tally_latency, {}
        answers, self._tally_answers = self._tally_answers, collections.Counter()
        for labels, n in answers.items():
            self._child(self.shadow_answers, *labels).inc(n)
        for (tenant, result), n in requests.items():
            self._child(self.shadow_requests, tenant, result).inc(n)
        for (tenant, endpoint, result), n in comparisons.items():
            self._child(self.shadow_comparisons, tenant, endpoint, result).inc(n)
        for (tenant, side, backend), tally in latency.items():
            _observe_many(self._child(self.shadow_latency_seconds, tenant, side, backend), tally)

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
        """`serving`: tenant -> the backend now serving it (the file, or a rollback lock), for the
        tenants new or moved; `previous`: the tenants gone. Only these are touched.

        dualstack_tenant_backend is per tenant only for the watched tenants (cardinality.py);
        dualstack_tenants counts all. At 10,000 tenants the gauge for everyone cost 3 s of start-up
        and 2 s of every scrape."""
        gone = previous.keys() - serving.keys()
        for slug in gone:
            self._serving.pop(slug, None)
            if slug in self._backend_shown:
                self._backend_shown.discard(slug)
                for backend in BACKENDS:
                    self.tenant_backend.remove(slug, backend)
        moved = [slug for slug in serving if slug in self._serving]
        self._serving.update(serving)
        self.detail = self.detail.with_moved(moved, gone)
        self._show_backend(self.detail.tenants & serving.keys())
        by_backend = collections.Counter(self._serving.values())
        for backend in BACKENDS:
            self.tenants.labels(backend).set(by_backend[backend])
        # A tenant moved to the other backend is about to be soaked there: its series start at zero
        # before the first request the new table routes, so the decider misses none of its errors.
        self._zero_series((self.detail.rolling & serving.keys()) | set(moved))

    def _show_backend(self, tenants: Iterable[str]) -> None:
        for slug in tenants:
            serving = self._serving.get(slug)
            if serving is None:
                continue  # not in this routing file
            self._backend_shown.add(slug)
            for backend in BACKENDS:
                self.tenant_backend.labels(slug, backend).set(1 if serving == backend else 0)

    def _zero_series(self, tenants: Iterable[str]) -> None:
        """Create a tenant's request series on its serving backend at zero.

        A counter that first appears already at 5 shows no increase() in Prometheus, so a soaking
        tenant's first errors would be invisible to the decider. Only for tenants in a rollout (or
        moved, which begins one): at 10,000 tenants the same for everyone was 2.2 million series."""
        for slug in tenants:
            backend = self._serving.get(slug)
            if backend is None:
                continue  # in the state database, not in this routing file: nothing routes it here
            for route in ROUTE_CLASSES:
                for code_class in CODE_CLASSES:
                    self._child(self.requests, slug, backend, code_class, route)
                self._child(self.duration, slug, backend, route)

    def config_rejected(self, issue_count: int, at_s: float) -> None:
        self.config_last_reload_success.set(0)
        self.config_last_reload_timestamp.set(at_s)
        self.config_issues.set(issue_count)

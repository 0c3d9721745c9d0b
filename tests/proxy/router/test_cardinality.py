"""Which tenants get per-tenant metric detail: in a rollout (zero series on their serving backend,
their own latency histogram) or shadowed (their own latency histogram); everyone else's latency
goes under one bounded tenant label."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from controlplane.state.rollouts import Phase, RolloutView
from proxy.router.cardinality import OTHER_TENANTS
from proxy.router.metrics import ProxyMetrics

SERVING = {"quiet": "v2", "mirrored": "v1", "soaking": "v2", "onv1": "v1"}


def metrics_for(serving: dict[str, str] = SERVING) -> tuple[ProxyMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = ProxyMetrics(registry)
    metrics.shadowed_tenants(frozenset({"mirrored"}))
    metrics.routes_changed(serving, {})
    return metrics, registry


def view(phase: Phase) -> RolloutView:
    return RolloutView(phase, soak_started_s=1.7e9, last_action=None, last_decision_s=None)


def latency_count(registry: CollectorRegistry, tenant: str, backend: str, route: str = "read") -> float | None:
    return registry.get_sample_value("dualstack_request_duration_seconds_count",
                                     {"tenant": tenant, "backend": backend, "route": route})


def errors(registry: CollectorRegistry, tenant: str, backend: str, route: str = "write") -> float | None:
    return registry.get_sample_value("dualstack_requests_total",
                                     {"tenant": tenant, "backend": backend, "code_class": "5xx", "route": route})


def test_only_rolling_and_shadowed_tenants_have_their_own_latency() -> None:
    metrics, registry = metrics_for()
    metrics.rollouts_seen({"soaking": view(Phase.SOAKING), "onv1": view(Phase.PROMOTED)})
    for tenant, backend in SERVING.items():
        metrics.observe(tenant, backend, 200, 0.01, "read")

    assert latency_count(registry, "soaking", "v2") == 1
    assert latency_count(registry, "mirrored", "v1") == 1
    assert latency_count(registry, "quiet", "v2") is None
    assert latency_count(registry, "onv1", "v1") is None  # promoted: the rollout is over
    assert latency_count(registry, OTHER_TENANTS, "v2") == 1
    assert latency_count(registry, OTHER_TENANTS, "v1") == 1
    # Request counters keep every tenant's name (the error-budget alerts are per tenant).
    for tenant, backend in SERVING.items():
        assert registry.get_sample_value("dualstack_requests_total", {
            "tenant": tenant, "backend": backend, "code_class": "2xx", "route": "read"}) == 1


def test_no_zero_series_outside_a_rollout() -> None:
    metrics, registry = metrics_for()
    metrics.rollouts_seen({"onv1": view(Phase.ROLLED_BACK)})
    for tenant, backend in SERVING.items():
        assert errors(registry, tenant, backend) is None
        assert latency_count(registry, tenant, backend) is None


def test_a_tenant_entering_a_rollout_gets_zero_series_on_its_serving_backend() -> None:
    metrics, registry = metrics_for()
    metrics.rollouts_seen({})
    assert errors(registry, "soaking", "v2") is None

    metrics.rollouts_seen({"soaking": view(Phase.SOAKING)})
    for route in ("read", "write", "webhook", "admin"):
        assert errors(registry, "soaking", "v2", route) == 0
        assert latency_count(registry, "soaking", "v2", route) == 0
        assert errors(registry, "soaking", "v1", route) is None  # not its serving backend
    assert errors(registry, "quiet", "v2") is None


def test_a_rolling_tenant_moved_by_a_lock_gets_zero_series_on_its_new_backend() -> None:
    metrics, registry = metrics_for()
    metrics.rollouts_seen({"soaking": view(Phase.HELD)})
    assert errors(registry, "soaking", "v1") is None

    metrics.routes_changed({"soaking": "v1"}, {})
    assert errors(registry, "soaking", "v1") == 0
    assert registry.get_sample_value("dualstack_tenant_backend", {"tenant": "soaking", "backend": "v1"}) == 1


def test_rollout_gauges_change_only_for_tenants_whose_view_changed() -> None:
    metrics, registry = metrics_for()
    metrics.rollouts_seen({"soaking": view(Phase.SOAKING), "onv1": view(Phase.PROMOTED)})
    # Something else set the gauge since (it stands for "was it written again?").
    metrics.rollout_phase.labels("onv1", "promoted").set(7)
    metrics.rollouts_seen({"soaking": view(Phase.PROMOTED), "onv1": view(Phase.PROMOTED)})

    assert registry.get_sample_value("dualstack_rollout_phase", {"tenant": "onv1", "phase": "promoted"}) == 7
    assert registry.get_sample_value("dualstack_rollout_phase", {"tenant": "soaking", "phase": "promoted"}) == 1
    assert registry.get_sample_value("dualstack_rollout_phase", {"tenant": "soaking", "phase": "soaking"}) == 0


def test_backend_gauge_per_tenant_only_for_watched_tenants_and_counts_for_all() -> None:
    metrics, registry = metrics_for()
    metrics.rollouts_seen({"soaking": view(Phase.SOAKING)})

    def shown(tenant: str, backend: str) -> float | None:
        return registry.get_sample_value("dualstack_tenant_backend", {"tenant": tenant, "backend": backend})

    assert (shown("soaking", "v2"), shown("soaking", "v1")) == (1, 0)
    assert shown("mirrored", "v1") == 1
    assert shown("quiet", "v2") is None
    assert registry.get_sample_value("dualstack_tenants", {"backend": "v2"}) == 2

    metrics.routes_changed({"quiet": "v1"}, {})  # moved (a lock, a flip): shown from now on
    assert (shown("quiet", "v1"), shown("quiet", "v2")) == (1, 0)
    metrics.routes_changed({"quiet": "v2"}, {})  # and back: still shown, so the return is visible
    assert (shown("quiet", "v1"), shown("quiet", "v2")) == (0, 1)
    assert registry.get_sample_value("dualstack_tenants", {"backend": "v1"}) == 2


def test_a_tenant_moved_to_the_other_backend_gets_zero_series_there_at_once() -> None:
    """A flip begins a rollout: the zeros exist before the first request the new table routes."""
    metrics, registry = metrics_for()
    metrics.routes_changed({"quiet": "v1"}, {})
    assert errors(registry, "quiet", "v1") == 0
    assert errors(registry, "quiet", "v2") is None
    metrics.observe("quiet", "v1", 200, 0.01, "read")  # and its latency is its own from now on
    assert latency_count(registry, "quiet", "v1") == 1
    assert latency_count(registry, OTHER_TENANTS, "v1") is None

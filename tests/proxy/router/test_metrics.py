"""Shadow outcomes are tallied on the copy path and exported in bulk: the totals are exactly those of
one update per copy."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from controlplane.config.latency_buckets import DURATION_BUCKETS
from proxy.router.metrics import ProxyMetrics

LATENCIES = [0.0004, 0.001, 0.0011, 0.0049, 0.3, 2.5, 7.0, 31.0, 45.5]


def test_bulk_export_equals_one_update_per_copy() -> None:
    registry = CollectorRegistry()
    metrics = ProxyMetrics(registry)
    for i, seconds in enumerate(LATENCIES):
        metrics.shadow_request("shop", "sent")
        metrics.shadow_comparison("shop", "GET /orders/{id}/status", "match" if i % 3 else "mismatch")
        metrics.shadow_latency("shop", ("v2", "v1"), seconds / 2, seconds)
    metrics.shadow_request("shop", "timeout")
    assert registry.get_sample_value("dualstack_shadow_requests_total", {"tenant": "shop", "result": "sent"}) is None
    metrics.flush_shadow()
    metrics.flush_shadow()  # nothing new: nothing added twice

    expected = CollectorRegistry()
    histogram = Histogram("dualstack_shadow_latency_seconds", "", ["tenant", "side", "backend"],
                          buckets=DURATION_BUCKETS, registry=expected)
    for seconds in LATENCIES:
        histogram.labels("shop", "primary", "v2").observe(seconds / 2)
        histogram.labels("shop", "shadow", "v1").observe(seconds)

    def samples(reg: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in reg.collect() for s in m.samples
                if s.name.startswith("dualstack_shadow_latency_seconds") and not s.name.endswith("_created")}

    assert samples(registry) == samples(expected)
    get = registry.get_sample_value
    assert get("dualstack_shadow_requests_total", {"tenant": "shop", "result": "sent"}) == len(LATENCIES)
    assert get("dualstack_shadow_requests_total", {"tenant": "shop", "result": "timeout"}) == 1
    assert get("dualstack_shadow_comparisons_total", {"tenant": "shop", "endpoint": "GET /orders/{id}/status",
                                                      "result": "mismatch"}) == 3


def test_the_answers_to_mirrored_pairs_are_counted_by_side_backend_and_class() -> None:
    registry = CollectorRegistry()
    metrics = ProxyMetrics(registry)
    for shadow_status in (200, 503, 502, 404, 999):
        metrics.shadow_answers_pair("shop", ("v2", "v1"), (200, shadow_status))
    metrics.flush_shadow()
    metrics.flush_shadow()  # nothing added twice

    def get(side: str, backend: str, code_class: str) -> float | None:
        return registry.get_sample_value("dualstack_shadow_answers_total", {"tenant": "shop", "side": side,
                                                                            "backend": backend,
                                                                            "code_class": code_class})

    assert get("primary", "v2", "2xx") == 5
    assert (get("shadow", "v1", "2xx"), get("shadow", "v1", "4xx"), get("shadow", "v1", "5xx")) == (1, 1, 3)

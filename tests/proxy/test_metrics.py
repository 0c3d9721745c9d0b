"""Shadow outcomes are tallied on the copy path and exported in bulk: the totals are exactly those of
one update per copy."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from proxy.metrics import DURATION_BUCKETS, ProxyMetrics

LATENCIES = [0.0004, 0.001, 0.0011, 0.0049, 0.3, 2.5, 7.0, 31.0, 45.5]


def test_bulk_export_equals_one_update_per_copy() -> None:
    registry = CollectorRegistry()
    metrics = ProxyMetrics(registry)
    for i, seconds in enumerate(LATENCIES):
        metrics.shadow_request("shop", "sent")
        metrics.shadow_comparison("shop", "GET /orders/{id}/status", "match" if i % 3 else "mismatch")
        metrics.shadow_latency("shop", seconds / 2, seconds)
    metrics.shadow_request("shop", "timeout")
    assert registry.get_sample_value("dualstack_shadow_requests_total", {"tenant": "shop", "result": "sent"}) is None
    metrics.flush_shadow()
    metrics.flush_shadow()  # nothing new: nothing added twice

    expected = CollectorRegistry()
    histogram = Histogram("dualstack_shadow_latency_seconds", "", ["tenant", "side"], buckets=DURATION_BUCKETS,
                          registry=expected)
    for seconds in LATENCIES:
        histogram.labels("shop", "primary").observe(seconds / 2)
        histogram.labels("shop", "shadow").observe(seconds)

    def samples(reg: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in reg.collect() for s in m.samples
                if s.name.startswith("dualstack_shadow_latency_seconds") and not s.name.endswith("_created")}

    assert samples(registry) == samples(expected)
    get = registry.get_sample_value
    assert get("dualstack_shadow_requests_total", {"tenant": "shop", "result": "sent"}) == len(LATENCIES)
    assert get("dualstack_shadow_requests_total", {"tenant": "shop", "result": "timeout"}) == 1
    assert get("dualstack_shadow_comparisons_total", {"tenant": "shop", "endpoint": "GET /orders/{id}/status",
                                                      "result": "mismatch"}) == 3

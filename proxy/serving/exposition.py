"""What /metrics renders in either server: the worker's own registry, or, with several workers,
the aggregate of every worker's multiprocess files (PROMETHEUS_MULTIPROC_DIR, set by the supervisor)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry

from proxy.serving.metric_files import LockedCollector


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition_registry(own: CollectorRegistry) -> CollectorRegistry:
    """The registry /metrics should render: the worker's own, or the aggregate of all workers."""
    if not multiprocess_enabled():
        return own
    registry = CollectorRegistry()
    registry.register(LockedCollector(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    return registry

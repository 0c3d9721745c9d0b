"""What a reconcile run leaves for Prometheus: a node_exporter textfile (the timer's process is gone
before any scrape), one file per tenant, replaced atomically.

`dualstack_reconcile_stuck_orders` counts the orders v2 holds in a status Midtrans may disagree
with that the run could not settle (Get Status unavailable, a wrong amount, ...): the alert's
signal. `dualstack_reconcile_pending_orders` is every order pending past the threshold when the run
started (most are carts nobody paid: information, not an alarm).
"""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from controlplane.reconcile.driver import ReconcileReport


def write_metrics(path: Path, tenant: str, report: ReconcileReport | None) -> None:
    """`report` None: the run could not ask v2 (last_run_success 0)."""
    registry = CollectorRegistry()
    Gauge("dualstack_reconcile_last_run_timestamp_seconds", "When reconcile last ran for the tenant",
          ["tenant"], registry=registry).labels(tenant).set(time.time())
    Gauge("dualstack_reconcile_last_run_success", "1 if the last reconcile run could ask v2, else 0",
          ["tenant"], registry=registry).labels(tenant).set(0 if report is None else 1)
    if report is not None:
        Gauge("dualstack_reconcile_stuck_orders", "Orders the last run could not settle on Midtrans' word",
              ["tenant"], registry=registry).labels(tenant).set(report.stuck)
        Gauge("dualstack_reconcile_pending_orders", "Orders pending on v2 past the threshold when the run started",
              ["tenant"], registry=registry).labels(tenant).set(report.pending_past_threshold)
        results = Gauge("dualstack_reconcile_orders", "What the last run did, per result", ["tenant", "result"],
                        registry=registry)
        for result, n in sorted(report.results.items()):
            results.labels(tenant, result).set(n)
    write_to_textfile(str(path), registry)

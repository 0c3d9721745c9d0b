"""Evidence from the routers' own /metrics, for when no Prometheus runs (the demo, small setups).

Each call scrapes every router, sums the tenant's counters across them, and stores a snapshot in
the state database. Counts since the soak started are the newest snapshot minus the first one
taken at or after the start; the 1 h and 5 min windows use the oldest snapshot inside them. v1's
baseline is what the routers counted for the tenant on v1 before the soak. A counter that went
down (a router restarted) is counted from zero. Scraping or storage failing raises SourceError,
which holds the decision.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any

import psycopg
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from psycopg.types.json import Jsonb

from controlplane.rollout.decide import Counts, Evidence
from controlplane.rollout.sources import SourceError

Snapshot = dict[str, float]


def _key(name: str, labels: dict[str, str]) -> str | None:
    if name == "dualstack_requests_total" and labels.get("backend") in ("v1", "v2"):
        suffix = "errors" if labels.get("code_class") == "5xx" else "ok"
        return f"{labels['backend']}_{suffix}"
    if name == "dualstack_shadow_comparisons_total":
        return "shadow_mismatch" if labels.get("result") == "mismatch" else "shadow_other"
    if name == "dualstack_request_duration_seconds_bucket" and labels.get("backend") in ("v1", "v2"):
        return f"{labels['backend']}_le_{labels['le']}"
    return None


def scrape(urls: list[str], tenant: str, timeout_s: float = 5.0) -> Snapshot:
    totals: Snapshot = {}
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            raise SourceError(f"cannot read {url}: {exc}") from None
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("tenant") != tenant:
                    continue
                key = _key(sample.name, sample.labels)
                if key is not None:
                    totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def _delta(new: Snapshot, old: Snapshot, key: str) -> float:
    now, then = new.get(key, 0.0), old.get(key, 0.0)
    return now if now < then else now - then  # went down: a router restarted and counts from zero


def _counts(new: Snapshot, old: Snapshot, backend: str) -> Counts:
    errors = _delta(new, old, f"{backend}_errors")
    return Counts(round(errors), round(errors + _delta(new, old, f"{backend}_ok")))


def _p99(new: Snapshot, old: Snapshot, backend: str) -> float | None:
    prefix = f"{backend}_le_"
    buckets = sorted(((float(k[len(prefix):]), _delta(new, old, k)) for k in new if k.startswith(prefix)),
                     key=lambda b: b[0])
    if not buckets or buckets[-1][1] <= 0:
        return None
    target = 0.99 * buckets[-1][1]
    return next((le for le, count in buckets if count >= target and le != float("inf")), None)


class EmbeddedSource:
    def __init__(self, metrics_urls: list[str], database_url: str, schema: str) -> None:
        self.metrics_urls = metrics_urls
        self.database_url = database_url
        self.schema = schema

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=sql.Identifier(self.schema))

    def evidence(self, tenant: str, soak_started_at: datetime, now: datetime) -> Evidence:
        current = scrape(self.metrics_urls, tenant)
        try:
            with psycopg.connect(self.database_url) as conn, conn.transaction():
                conn.execute(self._q("INSERT INTO {s}.rollout_snapshots (tenant, taken_at, counters) "
                                     "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"), (tenant, now, Jsonb(current)))
                rows = conn.execute(self._q(
                    "SELECT taken_at, counters FROM {s}.rollout_snapshots WHERE tenant = %s AND taken_at >= %s "
                    "ORDER BY taken_at"), (tenant, soak_started_at)).fetchall()
                conn.execute(self._q("DELETE FROM {s}.rollout_snapshots WHERE tenant = %s AND (taken_at < %s OR "
                                     "(taken_at < %s AND taken_at > %s))"),
                             (tenant, soak_started_at, now - timedelta(hours=2), rows[0][0]))
        except psycopg.Error as exc:
            raise SourceError(f"cannot keep counter snapshots: {type(exc).__name__}") from None
        base: Snapshot = rows[0][1]

        def since(seconds: float) -> Snapshot:
            cutoff = now - timedelta(seconds=seconds)
            return next((counters for taken, counters in rows if taken >= cutoff), base)

        v2 = _counts(current, base, "v2")
        shadow_total = round(_delta(current, base, "shadow_mismatch") + _delta(current, base, "shadow_other"))
        empty: dict[str, Any] = {}
        return Evidence(
            v2=v2, baseline=_counts(base, empty, "v1"), v2_last_hour=_counts(current, since(3600), "v2"),
            v2_last_5m=_counts(current, since(300), "v2"), v2_p99_s=_p99(current, base, "v2"),
            baseline_p99_s=_p99(base, empty, "v1"), latency_samples=v2.total,
            shadow=Counts(round(_delta(current, base, "shadow_mismatch")), shadow_total) if shadow_total else None)

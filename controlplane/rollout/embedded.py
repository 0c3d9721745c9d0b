"""Evidence from the routers' own /metrics, for when no Prometheus runs (the demo, small setups).

Each pass scrapes every router once and stores each soaking tenant's counters, router by router, as
a snapshot in the state database. The new slice is the difference from the previous snapshot, taken
per router and per series: a counter that went down means that router restarted, so what it shows
is counted from zero (never a negative count, and never the other routers' totals or anything from
before the soak, which a sum over routers would pull in). v1 over the same interval is every request v1 answered
through the routers; v1's history is this tenant's own v1 counters in the soak's first snapshot.
Scraping or storage failing raises SourceError, which holds the decision.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from controlplane.http_failure import describe
from controlplane.rollout.evidence import (
    LATENCY_ROUTES,
    ROUTES,
    Evidence,
    History,
    Latency,
    Slice,
    latency_from_buckets,
)
from controlplane.rollout.sources import Read, SourceError
from controlplane.shadow.matchrate import MatchRate
from controlplane.state.snapshots import Snapshot, SnapshotStore

_SHADOW_RESULTS: Final = ("match", "mismatch", "noise")


def series_key(router: str, name: str, labels: dict[str, str], tenant: str) -> str | None:
    """The snapshot key of one sample, or None if the decision does not use it."""
    backend, route = labels.get("backend"), labels.get("route", "read")
    mine = labels.get("tenant") == tenant
    if (backend == "v2" and not mine) or (backend == "v1" and labels.get("tenant") == "unknown"):
        return None
    if name == "dualstack_requests_total" and backend in ("v1", "v2") and route in ROUTES:
        kind = "err" if labels.get("code_class") == "5xx" else "ok"
        return f"{router}|{backend}|{route}|{kind}" + ("|own" if mine and backend == "v1" else "")
    if name == "dualstack_request_duration_seconds_bucket" and backend in ("v1", "v2") and route in LATENCY_ROUTES:
        return f"{router}|{backend}|le|{labels['le']}"
    if (name == "dualstack_shadow_answers_total" and mine and labels.get("side") == "shadow"
            and backend == "v1"):
        return f"{router}|v1shadow|" + ("err" if labels.get("code_class") == "5xx" else "ok")
    if (name == "dualstack_shadow_latency_seconds_bucket" and mine
            and (labels.get("side"), backend) in (("primary", "v2"), ("shadow", "v1"))):
        return f"{router}|pair{backend}|le|{labels['le']}"
    if name == "dualstack_shadow_comparisons_total" and mine and labels.get("result") in _SHADOW_RESULTS:
        return f"{router}|shadow|{labels['result']}"
    return None


Sample = tuple[str, str, dict[str, str], float]  # router, name, labels, value


def read_routers(urls: list[str], timeout_s: float = 5.0) -> list[Sample]:
    """Every router's samples, read once per pass (whatever the number of tenants soaking)."""
    samples: list[Sample] = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError) as exc:
            raise SourceError(f"cannot read {url}: {describe(exc, timeout_s)}") from None
        samples.extend((url, s.name, s.labels, s.value) for family in text_string_to_metric_families(text)
                       for s in family.samples)
    return samples


def counters_of(samples: list[Sample], tenant: str) -> Snapshot:
    counters: Snapshot = {}
    for router, name, labels, value in samples:
        key = series_key(router, name, labels, tenant)
        if key is not None:
            counters[key] = counters.get(key, 0.0) + value
    return counters


def increase(new: float, old: float | None) -> float:
    """A counter's increase between two readings; one that went down was restarted and counts from zero."""
    if old is None or new < old:
        return new
    return new - old


def deltas(new: Snapshot, old: Snapshot) -> dict[str, float]:
    """Per series, then summed over routers (the router is the key's first part)."""
    out: dict[str, float] = {}
    for key, value in new.items():
        part = key.split("|", 1)[1]
        out[part] = out.get(part, 0.0) + increase(value, old.get(key))
    return out


def _slice(d: dict[str, float], end_s: float, length_s: float) -> Slice:
    def total(prefix: str) -> int:
        return round(sum(v for k, v in d.items() if k.startswith(prefix)))

    def by_route(backend: str, suffix: str) -> tuple[int, int, int]:
        read, write, webhook = (total(f"{backend}|{route}|{suffix}") for route in ROUTES)
        return read, write, webhook

    return Slice(end_s, length_s, by_route("v2", ""), by_route("v2", "err"), by_route("v1", ""),
                 by_route("v1", "err"), _latency(d), MatchRate(*(total(f"shadow|{r}") for r in _SHADOW_RESULTS)),
                 (total("v1shadow|"), total("v1shadow|err")), _latency(d, "pair"))


def _latency(d: dict[str, float], prefix: str = "") -> Latency | None:
    """v2's and v1's latency: of all their requests, or (prefix "pair") of the mirrored pairs."""
    buckets: dict[str, dict[float, float]] = {f"{prefix}v1": {}, f"{prefix}v2": {}}
    for key, value in d.items():
        backend, kind, *rest = key.split("|")
        if kind == "le" and backend in buckets:
            buckets[backend][float(rest[0])] = value
    return latency_from_buckets(buckets[f"{prefix}v2"], buckets[f"{prefix}v1"])


def history(first: Snapshot) -> History | None:
    """This tenant's own v1 counters when the soak began (since each router started)."""
    requests, errors = [0, 0, 0], [0, 0, 0]
    for key, value in first.items():
        parts = key.split("|")
        if len(parts) == 5 and parts[1] == "v1" and parts[2] in ROUTES:
            route, kind = parts[2], parts[3]
            i = ROUTES.index(route)
            requests[i] += round(value)
            errors[i] += round(value) if kind == "err" else 0
    if not any(requests):
        return None
    return History((requests[0], requests[1], requests[2]), (errors[0], errors[1], errors[2]))


class EmbeddedSource:
    def __init__(self, metrics_urls: list[str], database_url: str, schema: str) -> None:
        self.metrics_urls = metrics_urls
        self.snapshots = SnapshotStore(database_url, schema)

    def evidence_for(self, reads: Sequence[Read], at: datetime) -> dict[str, Evidence]:
        samples = read_routers(self.metrics_urls) if reads else []
        return {r.tenant: self._evidence(counters_of(samples, r.tenant), r, at) for r in reads}

    def _evidence(self, current: Snapshot, read: Read, at: datetime) -> Evidence:
        tenant, soak_started_at, after_s = read.tenant, read.soak_started_at, read.after_s
        try:
            rows = self.snapshots.keep(tenant, at, current, soak_started_at)
        except psycopg.Error as exc:
            raise SourceError(f"cannot keep counter snapshots: {type(exc).__name__}") from None
        first = history(rows[0][1]) if after_s <= soak_started_at.timestamp() else None
        previous = [(taken, counters) for taken, counters in rows[:-1] if taken.timestamp() < at.timestamp()]
        if not previous:
            return Evidence((), first, read_until_s=after_s)
        taken, counters = previous[-1]
        end_s = at.timestamp()
        return Evidence((_slice(deltas(current, counters), end_s, end_s - taken.timestamp()),), first,
                        read_until_s=end_s)

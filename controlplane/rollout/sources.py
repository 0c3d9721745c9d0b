"""Where the evidence comes from: Prometheus over its HTTP API (one small interface, so another
source can be chosen by name). A source that fails raises SourceError; the decision then holds."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Protocol

from controlplane.rollout.decide import Counts, Evidence


class SourceError(Exception):
    """The evidence could not be read (the message says what failed)."""


class EvidenceSource(Protocol):
    def evidence(self, tenant: str, soak_started_at: datetime, now: datetime) -> Evidence: ...


class PrometheusSource:
    """Counts from the routers' metrics. v1's baseline is the tenant's own v1 traffic over the same
    length of time just before the soak began (offset), or nothing when it had none."""

    def __init__(self, base_url: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, expr: str, at: datetime) -> float | None:
        url = f"{self.base_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": at.timestamp()})
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                body = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SourceError(f"Prometheus at {self.base_url}: {exc}") from None
        if body.get("status") != "success":
            raise SourceError(f"Prometheus rejected {expr!r}: {body.get('error')}")
        result = body["data"]["result"]
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def _count(self, expr: str, at: datetime) -> int:
        value = self.query(expr, at)
        return round(value) if value is not None else 0

    def _counts(self, selector: str, window_s: int, at: datetime, offset_s: int = 0) -> Counts:
        offset = f" offset {offset_s}s" if offset_s else ""
        total = self._count(f"sum(increase(dualstack_requests_total{{{selector}}}[{window_s}s]{offset}))", at)
        errors = self._count(
            f'sum(increase(dualstack_requests_total{{{selector},code_class="5xx"}}[{window_s}s]{offset}))', at)
        return Counts(errors, total)

    def evidence(self, tenant: str, soak_started_at: datetime, now: datetime) -> Evidence:
        window = max(60, int((now - soak_started_at).total_seconds()))
        v2 = f'tenant="{tenant}",backend="v2"'
        v1 = f'tenant="{tenant}",backend="v1"'
        p99 = ("histogram_quantile(0.99, sum by (le) "
               "(increase(dualstack_request_duration_seconds_bucket{{{s}}}[{w}s]{o})))")
        mismatches = self._count(f'sum(increase(dualstack_shadow_comparisons_total{{tenant="{tenant}",'
                                 f'result="mismatch"}}[{window}s]))', now)
        comparisons = self._count(f'sum(increase(dualstack_shadow_comparisons_total{{tenant="{tenant}"}}'
                                  f'[{window}s]))', now)
        v2_counts = self._counts(v2, window, now)
        return Evidence(
            v2=v2_counts, baseline=self._counts(v1, window, now, offset_s=window),
            v2_last_hour=self._counts(v2, min(window, 3600), now), v2_last_5m=self._counts(v2, min(window, 300), now),
            v2_p99_s=self.query(p99.format(s=v2, w=window, o=""), now),
            baseline_p99_s=self.query(p99.format(s=v1, w=window, o=f" offset {window}s"), now),
            latency_samples=v2_counts.total, shadow=Counts(mismatches, comparisons) if comparisons else None)

"""Where the evidence comes from: Prometheus over its HTTP API (one small interface, so another source
can be chosen by name: embedded.py reads the routers directly). A source that fails raises
SourceError; the decision then holds.

Prometheus answers with per-minute slices since the last one the soak folded in: the counters' raw
values at each minute (query_range, step 60 s), summed per router and differenced per router, so a
router restart (its counters drop) counts from zero, never goes negative and never pulls in counts
from before the soak, and no count is inflated by increase()'s extrapolation:
- v2: the tenant's requests and errors by route;
- v1 over the same minutes: every request v1 answered through the routers (the tenants still on v1,
  and this tenant's own notification copies and order fallbacks), by route: the payment provider,
  the network and the time of day are the same for both;
- latency: both backends' duration histograms (reads and writes) as counts above each bound;
- the tenant's shadow comparisons, and v1's answers to its mirrored copies (the concurrent baseline
  when v1 serves no other tenant): their status classes, and the latency of both sides of each pair.
v1's history (the tenant's own v1 traffic over the soak's length before it started) is read once.
`at` may be any past time: the queries then see what Prometheus held then (replay.py).

The decider reads every soaking tenant in one pass: one query per measurement for all of them,
grouped by tenant and split here (v1's measurements, the same for every tenant, once), so a pass
costs the same handful of queries at one tenant or a thousand. Tenants whose soaks stand at
different minutes are read in groups of the same minutes; a group too large for one answer is
split so an answer holds at most MAX_TENANT_SLICES_PER_QUERY tenant-slices.
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from controlplane.http_failure import describe
from controlplane.rollout.evidence import LATENCY_ROUTES, ROUTES, Evidence, History, Slice, latency_from_buckets
from controlplane.shadow.matchrate import MatchRate

STEP_S: Final = 60
MAX_SLICES_PER_READ: Final = 1440  # a decider that was away for days catches up a day at a time
# One answer holds at most this many tenant-slices (a pass reads a minute or two per tenant: a
# thousand tenants in one query; a catch-up of a day, a dozen tenants per query).
MAX_TENANT_SLICES_PER_QUERY: Final = 20_000
MAX_TENANTS_PER_QUERY: Final = 5_000  # the tenant matcher's length (a POST body, not a URL)
HISTORY_S: Final = 24 * 3600


class SourceError(Exception):
    """The evidence could not be read (the message says what failed)."""


@dataclass(frozen=True, slots=True)
class Read:
    """What the decider asks for one tenant: the slices ending after `after_s` (and v1's history
    when `after_s` is the soak's start)."""

    tenant: str
    soak_started_at: datetime
    after_s: float


class EvidenceSource(Protocol):
    def evidence_for(self, reads: Sequence[Read], at: datetime) -> Mapping[str, Evidence]:
        """Each tenant's new slices up to `at`, by tenant; SourceError if they cannot be read."""
        ...


def _route(labels: Mapping[str, str]) -> int | None:
    """The route's index in ROUTES; routers from before the route label count everything as reads."""
    route = labels.get("route", "read")
    return ROUTES.index(route) if route in ROUTES else None


def tenant_matcher(tenants: Sequence[str]) -> str:
    """A PromQL label matcher for exactly these tenants (`tenant="a"`, `tenant=~"a|b"`)."""
    def quoted(text: str) -> str:
        return text.replace("\\", "\\\\").replace('"', '\\"')
    if len(tenants) == 1:
        return f'tenant="{quoted(tenants[0])}"'
    return 'tenant=~"' + quoted("|".join(re.escape(t) for t in sorted(tenants))) + '"'


def _chunks(items: Sequence[Read], size: int) -> Iterator[Sequence[Read]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# One slice's counts per tenant (or v1's, the same for every tenant), keyed by the slice's end.
Counts = dict[float, list[int]]  # requests by ROUTES, then errors by ROUTES
Buckets = dict[float, dict[float, int]]  # le -> requests at or under it


class PrometheusSource:
    def __init__(self, base_url: str, timeout_s: float = 10.0, lag_s: float = 30.0, step_s: int = STEP_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.lag_s = lag_s  # the newest slice is read only once every router has been scraped after it
        self.step_s = step_s  # the slices' length (a minute; the thresholds are calibrated for it)
        self.queries = 0  # sent so far (the bench counts them per pass)

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        # POST: a query naming a thousand tenants is longer than a URL should be.
        body_out = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(f"{self.base_url}{path}", data=body_out,
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.queries += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = _error_body(exc)
            if body is None:
                raise SourceError(f"Prometheus at {self.base_url}: {describe(exc, self.timeout_s)}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise SourceError(f"Prometheus at {self.base_url}: {describe(exc, self.timeout_s)}") from None
        if body.get("status") != "success":
            query = str(params.get("query"))
            shown = query if len(query) <= 200 else query[:200] + "..."
            raise SourceError(f"Prometheus rejected {shown!r}: {body.get('error')}")
        return body["data"]["result"]

    def query(self, expr: str, at: datetime) -> float | None:
        result = self._get("/api/v1/query", {"query": expr, "time": at.timestamp()})
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def _instant(self, expr: str, at_s: float) -> list[tuple[dict[str, str], int]]:
        result = self._get("/api/v1/query", {"query": expr, "time": at_s})
        return [(item["metric"], round(float(item["value"][1]))) for item in result
                if not math.isnan(float(item["value"][1]))]

    def history(self, tenant: str, soak_started_at: datetime, seconds: float) -> History | None:
        return self._histories([tenant], soak_started_at.timestamp(), seconds).get(tenant)

    def _histories(self, tenants: Sequence[str], started: float, seconds: float) -> dict[str, History]:
        """v1's record of each tenant over `seconds` before `started` (none: no v1 traffic)."""
        expr = (f"sum by (tenant, route, code_class) (increase(dualstack_requests_total{{{tenant_matcher(tenants)},"
                f'backend="v1"}}[{int(seconds)}s]))')
        counts: dict[str, list[int]] = defaultdict(lambda: [0] * 6)
        for labels, value in self._instant(expr, started):
            if (i := _route(labels)) is not None and labels.get("tenant") in tenants:
                row = counts[labels["tenant"]]
                row[i] += value
                row[3 + i] += value if labels.get("code_class") == "5xx" else 0
        return {tenant: History((c[0], c[1], c[2]), (c[3], c[4], c[5]), seconds) for tenant, c in counts.items()
                if any(c[:3])}

    def evidence(self, tenant: str, soak_started_at: datetime, after_s: float, at: datetime) -> Evidence:
        """One tenant's evidence (replay, tests): the same reading as the decider's pass."""
        return self.evidence_for([Read(tenant, soak_started_at, after_s)], at)[tenant]

    def _window(self, read: Read, at: datetime) -> tuple[float, float]:
        """The ends of the first and the last new slice (last < first: none has ended yet)."""
        step = self.step_s
        first = math.floor(max(read.after_s, read.soak_started_at.timestamp()) / step) * step + step
        last = math.floor((at.timestamp() - self.lag_s) / step) * step
        return first, min(last, first + (MAX_SLICES_PER_READ - 1) * step)

    def evidence_for(self, reads: Sequence[Read], at: datetime) -> dict[str, Evidence]:
        starting: dict[float, list[str]] = defaultdict(list)  # soak start -> tenants whose history is read
        windows: dict[tuple[float, float], list[Read]] = defaultdict(list)
        for read in reads:
            started = read.soak_started_at.timestamp()
            if read.after_s <= started:
                starting[started].append(read.tenant)
            windows[self._window(read, at)].append(read)
        histories: dict[str, History] = {}
        for started, tenants in starting.items():
            for i in range(0, len(tenants), MAX_TENANTS_PER_QUERY):
                histories.update(self._histories(tenants[i:i + MAX_TENANTS_PER_QUERY], started, HISTORY_S))
        out: dict[str, Evidence] = {}
        for (first, last), group in sorted(windows.items()):
            if last < first:
                out.update((r.tenant, Evidence((), histories.get(r.tenant), read_until_s=r.after_s)) for r in group)
                continue
            slices = round((last - first) / self.step_s) + 1
            v1 = self._measured('backend="v1",tenant!="unknown"', first, last, by_tenant=False)
            size = max(1, min(MAX_TENANTS_PER_QUERY, MAX_TENANT_SLICES_PER_QUERY // slices))
            for chunk in _chunks(group, size):
                tenants = [r.tenant for r in chunk]
                matcher = tenant_matcher(tenants)
                v2 = self._measured(f'{matcher},backend="v2"', first, last, by_tenant=True)
                shadow = self._shadow(matcher, first, last)
                for tenant in tenants:
                    out[tenant] = Evidence(self._slices(tenant, v2, v1, shadow, first, last), histories.get(tenant),
                                           read_until_s=last)
        return out

    def _increments(self, expr: str, keys: str, first: float, last: float) -> dict[tuple[str, ...], dict[float, int]]:
        """How much each counter of `expr` rose in each slice ending from `first` to `last`, summed over
        routers by the labels `keys`. Raw values, differenced per router: no extrapolation (increase()
        would inflate counts by a third at one sample every 15 s), and a drop is a restart that counts
        from zero. A series first seen inside the range (a router that started) counts from zero too."""
        names = [k.strip() for k in keys.split(",")]
        query = f"sum by (instance, job, {keys}) ({expr})"
        result = self._get("/api/v1/query_range", {"query": query, "start": first - self.step_s, "end": last,
                                                   "step": self.step_s})
        out: dict[tuple[str, ...], dict[float, int]] = defaultdict(lambda: defaultdict(int))
        for item in result:
            key = tuple(item["metric"].get(name, "") for name in names)
            previous: float | None = None
            for t_text, v_text in item["values"]:
                t, value = float(t_text), float(v_text)
                if math.isnan(value):
                    continue
                if previous is None and t < first:
                    previous = value  # the base: what the counter showed when the previous slice ended
                    continue
                rise = value if previous is None or value < previous else value - previous
                previous = value
                if rise:
                    out[key][t] += round(rise)
        return out

    def _measured(self, selector: str, first: float, last: float, *, by_tenant: bool
                  ) -> dict[str, tuple[Counts, Buckets]]:
        """Requests and errors by route, and the latency histogram, per tenant ('' when not by tenant)."""
        tenant = "tenant, " if by_tenant else ""
        counts: dict[str, Counts] = defaultdict(lambda: defaultdict(lambda: [0] * 6))
        requests = self._increments(f"dualstack_requests_total{{{selector}}}", f"{tenant}route, code_class",
                                    first, last)
        for key, values in requests.items():
            who, route, code = (key if by_tenant else ("", *key))
            if (i := _route({"route": route} if route else {})) is None:
                continue
            for t, value in values.items():
                row = counts[who][t]
                row[i] += value
                row[3 + i] += value if code == "5xx" else 0
        latency: dict[str, Buckets] = defaultdict(lambda: defaultdict(dict))
        routes = "|".join(LATENCY_ROUTES)
        buckets = self._increments(f'dualstack_request_duration_seconds_bucket{{{selector},route=~"{routes}"}}',
                                   f"{tenant}le", first, last)
        for key, values in buckets.items():
            who, le = (key if by_tenant else ("", *key))
            for t, value in values.items():
                latency[who][t][float(le)] = value
        return {who: (counts.get(who, {}), latency.get(who, {})) for who in counts.keys() | latency.keys()}

    def _shadow(self, matcher: str, first: float, last: float
                ) -> tuple[dict[str, dict[float, dict[str, int]]], dict[str, Counts],
                           dict[str, dict[tuple[str, float], dict[float, int]]]]:
        """Each tenant's shadow comparisons by result, v1's answers to its mirrored copies, and the
        latency of both sides of each mirrored pair (by side and slice)."""
        shadow: dict[str, dict[float, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
        comparisons = self._increments(f"dualstack_shadow_comparisons_total{{{matcher}}}", "tenant, result",
                                       first, last)
        for (tenant, result), values in comparisons.items():
            for t, value in values.items():
                shadow[tenant][t][result] = value
        # The mirrored reads: v2 answering them (the primary side) and v1 answering the copies.
        paired: dict[str, dict[tuple[str, float], dict[float, int]]] = defaultdict(lambda: defaultdict(dict))
        for side, backend in (("primary", "v2"), ("shadow", "v1")):
            pair_buckets = self._increments(f'dualstack_shadow_latency_seconds_bucket{{{matcher},'
                                            f'side="{side}",backend="{backend}"}}', "tenant, le", first, last)
            for (tenant, le), values in pair_buckets.items():
                for t, value in values.items():
                    paired[tenant][(side, t)][float(le)] = value
        answers = self._increments(f'dualstack_shadow_answers_total{{{matcher},side="shadow",backend="v1"}}',
                                   "tenant, code_class", first, last)
        v1_shadow: dict[str, Counts] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for (tenant, code), values in answers.items():
            for t, value in values.items():
                v1_shadow[tenant][t][0] += value
                v1_shadow[tenant][t][1] += value if code == "5xx" else 0
        return shadow, v1_shadow, paired

    def _slices(self, tenant: str, v2_all: Mapping[str, tuple[Counts, Buckets]],
                v1_all: Mapping[str, tuple[Counts, Buckets]],
                shadow_all: tuple[Mapping[str, dict[float, dict[str, int]]], Mapping[str, Counts],
                                  Mapping[str, dict[tuple[str, float], dict[float, int]]]],
                first: float, last: float) -> tuple[Slice, ...]:
        (v2_counts, v2_latency), (v1_counts, v1_latency) = v2_all.get(tenant, ({}, {})), v1_all.get("", ({}, {}))
        shadow, v1_shadow = shadow_all[0].get(tenant, {}), shadow_all[1].get(tenant, {})
        paired = shadow_all[2].get(tenant, {})
        slices = []
        t = first
        while t <= last:
            v2, v1 = v2_counts.get(t, [0] * 6), v1_counts.get(t, [0] * 6)
            seen = shadow.get(t, {})
            timing = latency_from_buckets(v2_latency.get(t), v1_latency.get(t))
            answered = v1_shadow.get(t)
            slices.append(Slice(t, self.step_s, (v2[0], v2[1], v2[2]), (v2[3], v2[4], v2[5]), (v1[0], v1[1], v1[2]),
                                (v1[3], v1[4], v1[5]), timing,
                                MatchRate(seen.get("match", 0), seen.get("mismatch", 0), seen.get("noise", 0)),
                                (answered[0], answered[1]) if answered else (0, 0),
                                latency_from_buckets(paired.get(("primary", t)), paired.get(("shadow", t)))))
            t += self.step_s
        return tuple(slices)


def _error_body(exc: urllib.error.HTTPError) -> Any:
    """Prometheus' own JSON error (a bad query answers 400 with it), or None."""
    try:
        body = json.loads(exc.read())
    except (OSError, ValueError):
        return None
    finally:
        exc.close()
    return body if isinstance(body, dict) else None

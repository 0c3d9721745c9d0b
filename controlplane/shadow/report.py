"""`dualstack shadow report`: what shadow comparisons showed for a tenant, as HTML, JSON or Markdown.

Data comes from the state database (written by the routers); everything in it was redacted before
it was stored. The match rate is controlplane/shadow/matchrate.py's (noise and not_replicated, the
shadow's sync lag confirmed by asking again, are shown, and are neither a match nor a mismatch).
Field differences are shown by kind (a type difference, `"149000.00"` against `149000`, is its own
kind, apart from value differences), and the counts by the backend that was primary, so minutes
before and after a flip are not mixed. The HTML has no external assets: charts are inline SVG, computed here, so ops
can open the file from disk or an email.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import jinja2
import psycopg

from controlplane.shadow.matchrate import MatchRate
from controlplane.shadow.redact import redact_value
from controlplane.shadow.samples import LATENCY_BUCKETS_MS
from controlplane.state import shadow_samples

TEMPLATES: Final = Path(__file__).resolve().parents[2] / "templates" / "report"
TOP_FIELDS: Final = 10
KIND_LABELS: Final = {
    "status": "HTTP status differs", "type_changed": "type differs (e.g. a string against a number)",
    "value_changed": "value differs", "missing": "only the primary has the field",
    "extra": "only the shadow has the field", "body": "non-JSON bodies differ (shown: their lengths in bytes)",
}
EXAMPLES_PER_FIELD: Final = 3
MAX_TIMELINE_POINTS: Final = 48


@dataclass(frozen=True)
class EndpointRow:
    endpoint: str
    comparisons: int
    matches: int
    mismatches: int
    noise: int
    not_replicated: int
    match_rate: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class FieldRow:
    endpoint: str
    path: str
    kind: str
    count: int
    examples: list[tuple[Any, Any]]


@dataclass(frozen=True)
class ReportData:
    tenant: str
    since: str
    until: str
    comparisons: int
    matches: int
    mismatches: int
    noise: int
    not_replicated: int
    match_rate: float
    ci_low: float
    ci_high: float
    endpoints: list[EndpointRow]
    by_primary: list[EndpointRow]  # one row per backend that was primary ("endpoint" names the backend)
    kinds: dict[str, int]  # field differences by kind
    fields: list[FieldRow]
    latency_buckets_ms: list[int]
    primary_latency: list[int]
    shadow_latency: list[int]
    timeline: list[tuple[str, int, int]]  # (bucket start, comparisons, mismatches)


def endpoint_row(endpoint: str, rate: MatchRate) -> EndpointRow:
    low, high = rate.interval
    return EndpointRow(endpoint, rate.comparisons, rate.matches, rate.mismatches, rate.noise, rate.not_replicated,
                       rate.rate, low, high)


def load(conn: psycopg.Connection[Any], schema: str, tenant: str, since: datetime, until: datetime) -> ReportData:
    rates = shadow_samples.endpoint_rates(conn, schema, tenant, since, until)
    overall = MatchRate.total(rates.values())
    low, high = overall.interval
    fields = [
        # Stored values were redacted by the router; redact again so a report can never leak.
        FieldRow(endpoint, path, kind, n, [(redact_value(p), redact_value(v)) for p, v in shadow_samples.examples(
            conn, schema, tenant, endpoint, path, since, EXAMPLES_PER_FIELD)])
        for endpoint, path, kind, n in shadow_samples.top_fields(conn, schema, tenant, since, until, TOP_FIELDS)]
    primary, shadow = shadow_samples.latency(conn, schema, tenant, since, until)
    width_s = max(60, math.ceil((until - since).total_seconds() / MAX_TIMELINE_POINTS / 60) * 60)
    timeline = [(start.isoformat(), c, mm)
                for start, c, mm in shadow_samples.timeline(conn, schema, tenant, since, until, width_s)]
    by_primary = shadow_samples.backend_rates(conn, schema, tenant, since, until)
    return ReportData(tenant, since.isoformat(), until.isoformat(), overall.comparisons, overall.matches,
                      overall.mismatches, overall.noise, overall.not_replicated, overall.rate, low, high,
                      [endpoint_row(endpoint, rate) for endpoint, rate in rates.items()],
                      [endpoint_row(backend, rate) for backend, rate in by_primary.items()],
                      shadow_samples.kinds(conn, schema, tenant, since, until), fields,
                      list(LATENCY_BUCKETS_MS), primary, shadow, timeline)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`24h`, `30m`, `7d` ago, or an ISO timestamp."""
    now = now or datetime.now(UTC)
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if text[:-1].isdigit() and text[-1] in units:
        return now - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since '{text}': use 30m, 24h, 7d or an ISO timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def render_json(data: ReportData) -> str:
    return json.dumps(asdict(data), indent=2, default=str) + "\n"


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def no_rate_yet(data: ReportData) -> str | None:
    """What a report leads with when there is no match rate to give (a rate of 0 of 0 is no rate);
    None when there is one."""
    if data.comparisons == 0:
        return (f"There are no comparisons yet for {data.tenant} in this window: is the tenant shadowed "
                "(`shadow:` in its routing-file entry), and does its traffic reach the router?")
    if data.matches + data.mismatches == 0:
        return (f"No match rate yet: none of the {data.comparisons} comparisons matched or mismatched "
                f"({data.noise} noise, {data.not_replicated} not replicated yet).")
    return None


def render_markdown(data: ReportData) -> str:
    rate = no_rate_yet(data) or (
        f"match rate: {_percent(data.match_rate)} (95% CI {_percent(data.ci_low)} to "
        f"{_percent(data.ci_high)}) of {data.matches + data.mismatches} matches and mismatches; noise and "
        "not replicated (the shadow answered 404, then found the order when asked again: sync lag) are neither")
    lines = [f"# Shadow comparison report: {data.tenant}", "",
             f"{data.since} to {data.until}", "",
             f"- comparisons: {data.comparisons} (match {data.matches}, mismatch {data.mismatches}, "
             f"noise {data.noise}, not replicated yet {data.not_replicated})",
             f"- {rate}", "", "## Endpoints", "",
             "| endpoint | comparisons | match | mismatch | noise | not replicated | match rate (95% CI) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for e in data.endpoints:
        lines.append(f"| `{e.endpoint}` | {e.comparisons} | {e.matches} | {e.mismatches} | {e.noise} | "
                     f"{e.not_replicated} | {_percent(e.match_rate)} ({_percent(e.ci_low)} to "
                     f"{_percent(e.ci_high)}) |")
    lines += ["", "## By primary backend", "",
              "| primary | comparisons | match | mismatch | noise | not replicated | match rate (95% CI) |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for e in data.by_primary:
        lines.append(f"| {e.endpoint} | {e.comparisons} | {e.matches} | {e.mismatches} | {e.noise} | "
                     f"{e.not_replicated} | {_percent(e.match_rate)} ({_percent(e.ci_low)} to "
                     f"{_percent(e.ci_high)}) |")
    lines += ["", "## Differences by kind", ""]
    lines += [f"- {kind} ({KIND_LABELS.get(kind, kind)}): {n}" for kind, n in data.kinds.items()] or ["None."]
    lines += ["", "## Fields that differ most", ""]
    if not data.fields:
        lines.append("No differences.")
    for f in data.fields:
        lines.append(f"- `{f.endpoint}` `{f.path}` ({f.kind}): {f.count} time(s)")
        for primary, shadow in f.examples:
            lines.append(f"  - primary `{json.dumps(primary)}` / shadow `{json.dumps(shadow)}`")
    return "\n".join(lines) + "\n"


def _latency_chart(data: ReportData) -> dict[str, Any]:
    total_p, total_s = sum(data.primary_latency) or 1, sum(data.shadow_latency) or 1
    bars, width, height, slot = [], 640, 180, 640 / len(data.primary_latency)
    labels = [f"≤{b}" for b in data.latency_buckets_ms] + [f">{data.latency_buckets_ms[-1]}"]
    peak = max([p / total_p for p in data.primary_latency] + [s / total_s for s in data.shadow_latency] + [0.01])
    for i, (p, s) in enumerate(zip(data.primary_latency, data.shadow_latency, strict=True)):
        for offset, share, css in ((0.1, p / total_p, "primary"), (0.5, s / total_s, "shadow")):
            h = share / peak * (height - 20)
            bars.append({"x": round(i * slot + offset * slot, 1), "y": round(height - h, 1),
                         "w": round(slot * 0.4, 1), "h": round(h, 1), "css": css,
                         "title": f"{labels[i]} ms: {share * 100:.1f}% of {css} answers"})
    ticks = [{"x": round(i * slot + slot / 2, 1), "label": labels[i]} for i in range(len(labels))]
    return {"width": width, "height": height, "bars": bars, "ticks": ticks}


def _minute(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _timeline_chart(data: ReportData) -> dict[str, Any]:
    width, height, left, bottom = 640, 160, 44, 20
    rates = [(start, mm / c if c else 0.0, c) for start, c, mm in data.timeline]
    peak = max([r for _, r, _ in rates] + [0.01])
    plot_w, plot_h = width - left - 10, height - bottom - 10
    dots = []
    for i, (start, rate, count) in enumerate(rates):
        x = left + (plot_w / 2 if len(rates) == 1 else i * plot_w / (len(rates) - 1))
        dots.append({"x": round(x, 1), "y": round(10 + plot_h - rate / peak * plot_h, 1),
                     "title": f"{_minute(start)}: {rate * 100:.1f}% mismatches of {count}"})
    return {"width": width, "height": height, "left": left, "top": 10, "bottom": height - bottom,
            "right": width - 10, "peak": f"{peak * 100:.1f}%",
            "first": _minute(rates[0][0]) if rates else "", "last": _minute(rates[-1][0]) if rates else "",
            "points": " ".join(f"{d['x']},{d['y']}" for d in dots), "dots": dots}


def render_html(data: ReportData) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    view = {
        "data": data, "since": _minute(data.since), "until": _minute(data.until), "no_rate": no_rate_yet(data),
        "rate": _percent(data.match_rate), "ci": f"{_percent(data.ci_low)} to {_percent(data.ci_high)}",
        "judged": data.matches + data.mismatches,
        "endpoints": [{**asdict(e), "rate": _percent(e.match_rate),
                       "ci": f"{_percent(e.ci_low)} to {_percent(e.ci_high)}"} for e in data.endpoints],
        "by_primary": [{**asdict(e), "rate": _percent(e.match_rate),
                        "ci": f"{_percent(e.ci_low)} to {_percent(e.ci_high)}"} for e in data.by_primary],
        "kinds": [{"kind": kind, "label": KIND_LABELS.get(kind, kind), "count": n} for kind, n in data.kinds.items()],
        "fields": [{**asdict(f), "examples": [(json.dumps(p), json.dumps(s)) for p, s in f.examples]}
                   for f in data.fields],
        "latency": _latency_chart(data), "timeline": _timeline_chart(data),
    }
    return env.get_template("shadow.html.j2").render(view)


RENDERERS: Final = {"html": render_html, "json": render_json, "md": render_markdown}

"""`dualstack status` as a terminal table (a line per tenant, at most 120 columns), as JSON (the keys
the README documents) and as a self-contained HTML page (templates/status/fleet.html.j2: no external
asset, and a Content-Security-Policy that would refuse one)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import jinja2

from controlplane.status.view import FleetView, TenantRow

TEMPLATES: Final = Path(__file__).resolve().parents[2] / "templates" / "status"
WIDTH: Final = 120
_COLUMNS: Final = ((12, "attention"), (22, "tenant"), (4, "decl"), (6, "eff"), (11, "phase"), (12, "soak"),
                   (11, "shadow"))


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes >= 48 * 60:
        return f"{minutes // 1440}d{minutes % 1440 // 60}h"
    if minutes >= 60:
        return f"{minutes // 60}h{minutes % 60:02d}m" if minutes % 60 else f"{minutes // 60}h"
    return f"{minutes}m"


def _count(n: int) -> str:
    return f"{n / 1_000_000:.1f}M" if n >= 1_000_000 else f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def _at(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"


def cells(row: TenantRow) -> dict[str, str]:
    """The row's short texts, as the table and the page show them."""
    soak = row.soak
    if soak is None:
        soak_text = "-"
    elif soak.remaining_s is None:
        soak_text = f"{soak.progress:.0%} held"
    else:
        soak_text = f"{soak.progress:.0%} {_duration(soak.remaining_s)}" if soak.remaining_s else "100% due"
    shadow = row.shadow
    shadow_text = (f"{shadow.rate:.1%}/{_count(shadow.judged)}" if shadow and shadow.judged
                   else f"-/{_count(shadow.comparisons)}" if shadow and shadow.comparisons else "-")
    unconfirmed = "?" if row.effective_from != "routers" and row.effective else ""
    decision = row.last_decision
    return {
        "attention": str(row.attention), "tenant": row.tenant, "decl": row.declared or "-",
        "eff": (row.effective or "-") + unconfirmed, "phase": (row.phase or "-").replace("_", " "),
        "soak": soak_text, "shadow": shadow_text,
        "decision": (f"{decision.action}{' (dry run)' if decision.dry_run else ''}: {decision.reason}"
                     if decision else ""),
        "why": "; ".join(row.reasons),
    }


def render_table(view: FleetView) -> str:
    header = " ".join(f"{name:{width}}" for width, name in _COLUMNS) + " why / last decision"
    lines = [f"dualstack status at {_at(view.generated_at)}: {len(view.tenants)} tenant(s); "
             + ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in view.counts.items() if n), "", header]
    cut: list[str] = []  # the rows whose reasons did not fit: shown in full below the table
    for row in view.tenants:
        c = cells(row)
        line = " ".join(_fit(c[name], width) for width, name in _COLUMNS) + " " + (c["why"] or c["decision"] or "-")
        lines.append(_fit(line, WIDTH).rstrip())
        if len(line) > WIDTH:
            cut += [f"  {row.tenant}: {reason}" for reason in row.reasons or (c["decision"],)]
    if not view.tenants:
        lines.append("(no tenants)")
    if cut:
        lines += ["", "why, in full:", *cut]
    lines += ["", "eff: what the routers serve; with ?, no router was read and it is what the file and the locks "
              "say", "soak: share of the window and time to the decision; shadow: match rate/comparisons "
              f"over {_duration(view.shadow_window_s)}", "", "sources:"]
    lines += [f"  {_source_mark(s.ok):7} {s.kind.replace('_', ' ')} {s.where}: {s.detail}" for s in view.sources]
    if view.fleet_alerts:
        lines += ["", "alerts not about one tenant:"]
        lines += [f"  {a.name} ({a.severity or 'no severity'}) {a.summary}".rstrip() for a in view.fleet_alerts]
    return "\n".join(lines) + "\n"


def _fit(text: str, width: int) -> str:
    return f"{text:{width}}" if len(text) <= width else text[: width - 1] + "…"


def _source_mark(ok: bool | None) -> str:
    return "ok" if ok else "skipped" if ok is None else "FAILED"


def to_json(view: FleetView) -> dict[str, Any]:
    return {
        "generated_at": view.generated_at.isoformat(),
        "complete": view.complete,
        "counts": view.counts,
        "shadow_window_s": view.shadow_window_s,
        "sources": [{"kind": str(s.kind), "where": s.where, "ok": s.ok, "detail": s.detail} for s in view.sources],
        "fleet_alerts": [_alert(a) for a in view.fleet_alerts],
        "tenants": [_tenant_json(row) for row in view.tenants],
    }


def _alert(alert: Any) -> dict[str, Any]:
    return {"name": alert.name, "severity": alert.severity, "tenant": alert.tenant, "summary": alert.summary,
            "active_at": alert.active_at}


def _tenant_json(row: TenantRow) -> dict[str, Any]:
    soak, decision, shadow, lock = row.soak, row.last_decision, row.shadow, row.lock
    return {
        "tenant": row.tenant, "attention": str(row.attention), "declared": row.declared,
        "effective": row.effective, "effective_from": row.effective_from, "reasons": list(row.reasons),
        "phase": row.phase,
        "soak": None if soak is None else {
            "started_at": soak.started_at.isoformat(), "window_s": soak.window_s, "progress": round(soak.progress, 4),
            "decision_due_at": soak.decision_due_at.isoformat() if soak.decision_due_at else None,
            "remaining_s": soak.remaining_s},
        "last_decision": None if decision is None else {
            "at": decision.at.isoformat(), "action": decision.action, "verdict": decision.verdict,
            "dry_run": decision.dry_run, "reason": decision.reason},
        "shadow": None if shadow is None else {
            "matches": shadow.matches, "mismatches": shadow.mismatches, "noise": shadow.noise,
            "not_replicated": shadow.not_replicated, "match_rate": shadow.rate if shadow.judged else None,
            "ci_low": shadow.interval[0], "ci_high": shadow.interval[1]},
        "lock": None if lock is None else {
            "backend": lock.backend, "declared_backend": lock.declared_backend, "reason": lock.reason,
            "actor": lock.actor, "created_at": lock.created_at.isoformat() if lock.created_at else None,
            "refused": row.lock_refused},
        "alerts": [_alert(a) for a in row.alerts],
        "reverse_sync": None if row.reverse_sync is None else {
            "caught_up_to": row.reverse_sync.caught_up_to.isoformat() if row.reverse_sync.caught_up_to else None,
            "lag_s": row.reverse_sync.lag_s, "rows_copied": row.reverse_sync.rows_copied,
            "last_pass_at": row.reverse_sync.last_pass_at.isoformat() if row.reverse_sync.last_pass_at else None,
            "last_error": row.reverse_sync.last_error},
    }


def render_json(view: FleetView) -> str:
    return json.dumps(to_json(view), indent=2) + "\n"


def render_html(view: FleetView) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    page = {
        "generated_at": _at(view.generated_at),
        "complete": view.complete,
        "counts": [{"name": name.replace("_", " "), "css": name, "n": n} for name, n in view.counts.items() if n],
        "window": _duration(view.shadow_window_s),
        "rows": [{**cells(row), "css": str(row.attention), "reasons": list(row.reasons)} for row in view.tenants],
        "sources": [{"mark": _source_mark(s.ok), "kind": s.kind.replace("_", " "), "where": s.where,
                     "detail": s.detail} for s in view.sources],
        "fleet_alerts": [_alert(a) for a in view.fleet_alerts],
    }
    return env.get_template("fleet.html.j2").render(page)

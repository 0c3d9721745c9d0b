"""One reconcile run for one tenant: list the candidates on v2, have v2 settle each on Midtrans' word
at a bounded rate, and say what happened; for v1's pending orders (`v1_sqlite`), report only."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from controlplane.migrate import open_sqlite
from controlplane.reconcile.v2client import Candidate, V2Admin

# What leaves an order as v2 holds it although Midtrans may say otherwise: the orders to look at.
STUCK: Final = frozenset({"unavailable", "amount_mismatch", "unknown_status", "ignored_precedence", "error"})
GIVE_UP_AFTER: Final = 3  # Get Status unavailable for this many orders in a row: the rest wait for the next run

Progress = Callable[[str, int, int], None]


@dataclass
class ReconcileReport:
    tenant: str
    pending_past_threshold: int = 0  # on v2, when the run started
    candidates: int = 0
    results: Counter[str] = field(default_factory=Counter)  # applied, no_change, unavailable, ...
    lines: list[str] = field(default_factory=list)  # one per order worth reading
    v1_checked: int = 0
    v1_lines: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def stuck(self) -> int:
        return sum(self.results[result] for result in STUCK)


class Pace:
    """At most `rate_per_s` calls a second (blocking: the command has nothing else to do)."""

    def __init__(self, rate_per_s: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval_s = 1.0 / rate_per_s
        self._sleep = sleep
        self._next = 0.0

    def wait(self) -> None:
        now = time.monotonic()
        if self._next > now:
            self._sleep(self._next - now)
        self._next = max(now, self._next) + self.interval_s


def _result(status: int, body: dict[str, Any]) -> str:
    if status == 200 and isinstance(body.get("result"), str):
        return str(body["result"])
    if status == 503:
        return "unavailable"
    if status == 404:
        return "unknown_order"  # v2 does not hold it (any more): nothing to settle
    return "error"


def _midtrans_said(body: dict[str, Any]) -> str:
    said = body.get("midtrans")
    if not isinstance(said, dict):
        said = {}
    fraud = f", fraud {said['fraudStatus']}" if said.get("fraudStatus") else ""
    return f"{said.get('transactionStatus', '?')}{fraud}"


def _line(candidate: Candidate, status: int, result: str, body: dict[str, Any]) -> str | None:
    order = candidate.order_id
    if result == "applied":
        flagged = ", flagged for a human (a paid order reversed)" if body.get("flagged") else ""
        return f"{order}: {body.get('from')} -> {body.get('to')} (Midtrans says {_midtrans_said(body)}){flagged}"
    if result == "error":
        return f"{order}: v2 answered HTTP {status}; not settled"
    if result in STUCK:
        why = body.get("reason") if result != "unavailable" else body.get("message")
        return f"{order}: not settled: {result} ({why or 'no reason given'})"
    return None  # no_change, unknown_at_midtrans, unknown_order: nothing to do


def reconcile(client: V2Admin, *, older_than_s: float, within_s: float = 7 * 86400, limit: int = 1000,
              rate_per_s: float = 5.0, progress: Progress | None = None, v1_sqlite: Path | None = None,
              sleep: Callable[[float], None] = time.sleep) -> ReconcileReport:
    """Raises V2Problem when v2 cannot be asked at all (nothing was settled after that point)."""
    started = time.monotonic()
    report = ReconcileReport(client.slug)
    report.pending_past_threshold, candidates = client.candidates(older_than_s=older_than_s, within_s=within_s,
                                                                  limit=limit)
    report.candidates = len(candidates)
    pace = Pace(rate_per_s, sleep)
    in_a_row = 0
    for done, candidate in enumerate(candidates):
        if progress:
            progress("reconciling", done, len(candidates))
        if in_a_row >= GIVE_UP_AFTER:
            report.results["unavailable"] += 1
            report.lines.append(f"{candidate.order_id}: not asked: Get Status was unavailable for the "
                                f"{GIVE_UP_AFTER} orders before it (the next run tries again)")
            continue
        pace.wait()
        status, body = client.reconcile(candidate.order_id)
        result = _result(status, body)
        in_a_row = in_a_row + 1 if result == "unavailable" else 0
        report.results[result] += 1
        line = _line(candidate, status, result, body)
        if line is not None:
            report.lines.append(line)
    if progress and candidates:
        progress("reconciling", len(candidates), len(candidates))
    if v1_sqlite is not None:
        _report_v1(v1_sqlite, client, report, older_than_s, within_s, limit, pace)
    report.seconds = time.monotonic() - started
    return report


def _report_v1(path: Path, client: V2Admin, report: ReconcileReport, older_than_s: float, within_s: float,
               limit: int, pace: Pace) -> None:
    """v1's orders pending past the threshold, against what Midtrans says: reported, never written."""
    conn = open_sqlite(path)
    try:
        rows = conn.execute(
            "SELECT id FROM orders WHERE lower(trim(status)) IN ('pending', 'pending_payment') "
            "AND julianday(created_at) <= julianday('now') - ? / 86400.0 "
            "AND julianday(created_at) >= julianday('now') - ? / 86400.0 ORDER BY created_at LIMIT ?",
            (older_than_s, within_s, limit)).fetchall()
    finally:
        conn.close()
    for (order_id,) in rows:
        pace.wait()
        status, body = client.midtrans_view(str(order_id))
        report.v1_checked += 1
        if status == 503:
            report.v1_lines.append(f"v1 order {order_id}: Get Status unavailable; not checked")
        elif status == 200 and body.get("status") not in (None, "pending"):
            report.v1_lines.append(f"v1 order {order_id}: pending on v1, Midtrans says {_midtrans_said(body)} "
                                   f"({body['status']}); v1 is never written: v1 shows it pending")

"""One reverse pass, and the verification of both sides.

A pass reads v2's clock first, then the tenant's orders changed since the last pass's watermark
(less `OVERLAP_S`: a transaction that began before the watermark and committed after it is read
again; writing an order twice changes nothing), a page at a time inside the tenant's row-level
security, and writes each page into v1's store. When it ends, every change v2 committed before the
clock it read first is in v1: that time is the next watermark, and what `caught up to` means.

The verification reads every order v2 holds for the tenant and the status v1 holds for each: v1
must hold every one, with a status at least as final (rows.behind)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from controlplane.errors import first_line
from controlplane.reverse.rows import Action, V2Order, ahead, behind
from controlplane.reverse.v1_stores import ReverseSyncProblem, V1Writer, Written

PAGE_ORDERS: Final = 1000
OVERLAP_S: Final = 60.0  # far longer than any of v2's transactions
CONNECT_TIMEOUT_S: Final = 10
_COLUMNS: Final = "order_id, customer_name, email, phone, gross_amount, payment_status, created_at, updated_at"


@dataclass
class PassReport:
    watermark: datetime  # v2's clock when the pass began: every change committed before it is in v1 now
    read: int = 0
    written: Written = field(default_factory=Written)
    seconds: float = 0.0
    lag_s: float = 0.0  # the pass's end minus its watermark (v2's clock)

    def line(self) -> str:
        c = self.written.counts
        return (f"{self.read} v2 orders read in {self.seconds:.2f}s: {c[Action.INSERT]} inserted into v1, "
                f"{c[Action.UPDATE]} updated, {c[Action.UNCHANGED]} unchanged, {c[Action.KEPT_V1]} as final or more "
                "on v1 (kept), "
                f"{len(self.written.unknown)} with a status v1 does not spell (left alone); caught up to "
                f"{self.watermark:%Y-%m-%d %H:%M:%S} UTC (lag {self.lag_s:.1f} s)")


def _v2(database_url: str, schema: str) -> psycopg.Connection[tuple[Any, ...]]:
    try:
        return psycopg.connect(database_url, options=f"-c search_path={schema}", autocommit=True,
                               connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        raise v2_problem(exc) from None


def v2_problem(exc: psycopg.Error) -> ReverseSyncProblem:
    return ReverseSyncProblem(f"v2's database: {first_line(exc)}", side="v2")


def _tenant_id(conn: psycopg.Connection[tuple[Any, ...]], slug: str) -> Any:
    row = conn.execute("SELECT id FROM tenants WHERE slug = %s", (slug,)).fetchone()
    if row is None:
        raise ReverseSyncProblem(f"no tenant '{slug}' in v2 (`dualstack tenant list` names them)")
    return row[0]


def _pages(conn: psycopg.Connection[tuple[Any, ...]], tenant_id: Any,
           since: datetime | None) -> Iterator[list[V2Order]]:
    """The tenant's orders changed at or after `since` (all of them: None), oldest change first, each
    page in its own short transaction bound to the tenant."""
    after: tuple[Any, str] | None = (since, "") if since is not None else None
    while True:
        with conn.transaction():
            conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))
            if after is None:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM orders ORDER BY updated_at, order_id LIMIT %s",
                                    (PAGE_ORDERS,)).fetchall()
            else:
                # ('' sorts before every order id, which has at least one character)
                rows = conn.execute(f"SELECT {_COLUMNS} FROM orders WHERE (updated_at, order_id) > (%s, %s) "
                                    "ORDER BY updated_at, order_id LIMIT %s", (*after, PAGE_ORDERS)).fetchall()
        if rows:
            yield [V2Order(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), str(r[5]), r[6], r[7])
                   for r in rows]
        if len(rows) < PAGE_ORDERS:
            return
        after = (rows[-1][7], str(rows[-1][0]))


def reverse_pass(writer: V1Writer, database_url: str, slug: str, schema: str = "payments", *,
                 watermark: datetime | None = None) -> PassReport:
    """Copy the tenant's v2 changes since `watermark` (every order: None) into v1's store."""
    started = time.monotonic()
    try:
        with _v2(database_url, schema) as conn:
            tenant_id = _tenant_id(conn, slug)
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            report = PassReport(watermark=row[0])
            since = None if watermark is None else watermark - timedelta(seconds=OVERLAP_S)
            for page in _pages(conn, tenant_id, since):
                report.read += len(page)
                report.written.add(writer.write(page))  # v1's problems are ReverseSyncProblem already
            end = conn.execute("SELECT clock_timestamp()").fetchone()
            assert end is not None
    except psycopg.Error as exc:
        raise v2_problem(exc) from None
    report.seconds = time.monotonic() - started
    report.lag_s = max(0.0, (end[0] - report.watermark).total_seconds())
    return report


@dataclass
class Verification:
    checked: int = 0
    newer: int = 0  # changed on v2 after `until`: not checked
    since: datetime | None = None  # only orders v2 changed since this time (less OVERLAP_S) were read
    behind: list[tuple[str, str]] = field(default_factory=list)  # (order id, why)
    ahead: list[tuple[str, str]] = field(default_factory=list)  # (order id, why): v1 says money moved, v2 not

    @property
    def clean(self) -> bool:
        return not self.behind


def verify_both_sides(writer: V1Writer, database_url: str, slug: str, schema: str = "payments", *,
                      until: datetime | None = None, since: datetime | None = None) -> Verification:
    """Every order v2 holds for the tenant is in v1's store, with a status at least as final; with
    `until` (a pass's watermark), every order v2 last changed before it (v2 may still be taking
    orders: those changed since are the next pass's); with `since` (an earlier verification's
    `until`), only the orders v2 changed since then (less OVERLAP_S): the others were verified."""
    out = Verification(since=since)
    try:
        with _v2(database_url, schema) as conn:
            tenant_id = _tenant_id(conn, slug)
            for page in _pages(conn, tenant_id, None if since is None else since - timedelta(seconds=OVERLAP_S)):
                checked = [o for o in page if until is None or o.updated_at < until]
                out.newer += len(page) - len(checked)
                held = writer.statuses([o.order_id for o in checked])
                out.checked += len(checked)
                out.behind += [(o.order_id, why) for o in checked
                               if (why := behind(held.get(o.order_id), o.status))]
                out.ahead += [(o.order_id, why) for o in checked if (why := ahead(held.get(o.order_id), o.status))]
    except psycopg.Error as exc:
        raise v2_problem(exc) from None
    return out

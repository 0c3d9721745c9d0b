"""`dualstack migrate sqlite`: v1's orders.db into v2's PostgreSQL, for one tenant, safely.

- The SQLite file is opened read-only (`mode=ro`): never written, and readable while v1 writes
  (WAL or not). Both status spellings are accepted (pending/paid and PENDING_PAYMENT/PAID/...).
- Bad rows (invalid email, amount <= 0, unknown status, an order id v2 cannot hold) are reported
  by id and not migrated; nothing is dropped silently.
- Valid rows are staged with COPY and upserted in one statement as the application role, inside
  the tenant's row-level security, so the migration cannot touch another tenant. A status only
  moves the way Midtrans notifications may move it (pending -> paid/failed/expired, failed or
  expired -> paid, paid -> refunded): an order already paid on v2 is never regressed. Re-running
  changes nothing.
- Verification after every run: counts, and a checksum per order of the fields both sides hold.
- `--dry-run` does all of it in a transaction that is rolled back, and reports what would change.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psycopg

STATUS_MAP: Final = {
    "pending": "pending", "pending_payment": "pending", "paid": "paid", "settlement": "paid",
    "failed": "failed", "failure": "failed", "expired": "expired", "expire": "expired", "refunded": "refunded",
}
_ORDER_ID_RE: Final = re.compile(r"^[A-Za-z0-9._~-]{1,50}$")
_EMAIL_RE: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
BATCH_ROWS: Final = 50_000
PROGRESS_EVERY: Final = 10_000

# (phase, done, total): reading and staging count rows; upserting and verifying are one step each.
Progress = Callable[[str, int, int], None]


class MigrationProblem(Exception):
    """The migration cannot run (the message says why); nothing was written."""


@dataclass(frozen=True, slots=True)
class V1Order:
    order_id: str
    name: str
    email: str
    phone: str
    amount: int
    method: str | None
    status: str  # v2's spelling


@dataclass
class Report:
    read: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)  # (order id, why)
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_newer: int = 0  # v2 had moved on (e.g. paid by a webhook): not regressed
    differences: list[tuple[str, str]] = field(default_factory=list)  # after the run: (order id, what)
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.differences


def _open_v1(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise MigrationProblem(f"{path}: no such file")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.execute("SELECT 1 FROM orders LIMIT 1")
    except sqlite3.DatabaseError as exc:
        raise MigrationProblem(f"{path}: not a v1 orders database ({exc})") from None
    return conn


def count_v1(path: Path) -> int:
    conn = _open_v1(path)
    try:
        row = conn.execute("SELECT count(*) FROM orders").fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def read_v1(path: Path) -> Iterator[tuple[V1Order | None, str, str]]:
    """(order or None, order id, why it is bad) for every row, read-only."""
    conn = _open_v1(path)
    try:
        cursor = conn.execute("SELECT id, customer_name, email, phone, amount, payment_method, status FROM orders")
        while rows := cursor.fetchmany(10_000):
            for order_id, name, email, phone, amount, method, status in rows:
                order_id = str(order_id)
                why = _problem(order_id, email, amount, status)
                if why:
                    yield None, order_id, why
                    continue
                yield V1Order(order_id, str(name or "").strip() or "-", str(email).strip(), str(phone or "").strip()
                              or "-", int(amount), method, STATUS_MAP[str(status).strip().lower()]), order_id, ""
    finally:
        conn.close()


def _problem(order_id: str, email: Any, amount: Any, status: Any) -> str:
    if not _ORDER_ID_RE.match(order_id):
        return "order id v2 cannot hold (1-50 of A-Z a-z 0-9 . _ ~ -)"
    if not isinstance(email, str) or not _EMAIL_RE.match(email.strip()):
        return f"invalid email {str(email)[:3]}***"
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        return f"amount {amount!r} is not a positive integer"
    if str(status or "").strip().lower() not in STATUS_MAP:
        return f"unknown status {status!r}"
    return ""


def checksum(order_id: str, amount: int, email: str, status: str) -> str:
    return hashlib.md5(f"{order_id}|{amount}|{email.lower()}|{status}".encode(), usedforsecurity=False).hexdigest()


_UPSERT: Final = """
WITH customer AS (
    INSERT INTO customers (tenant_id, email, phone, name)
    SELECT DISTINCT ON (lower(email)) %(tenant)s, lower(email), phone, name FROM migration_stage
    ORDER BY lower(email), order_id
    ON CONFLICT (tenant_id, email) DO UPDATE SET updated_at = customers.updated_at
    RETURNING id, email
), upserted AS (
    INSERT INTO orders AS o (tenant_id, order_id, customer_id, customer_name, email, phone, gross_amount,
                             payment_method, payment_status)
    SELECT %(tenant)s, s.order_id, c.id, s.name, s.email, s.phone, s.amount, s.method, s.status
    FROM migration_stage s JOIN customer c ON c.email = lower(s.email)
    ON CONFLICT (tenant_id, order_id) DO UPDATE SET
        payment_status = EXCLUDED.payment_status, updated_at = now()
    WHERE o.payment_status <> EXCLUDED.payment_status AND (
        (o.payment_status = 'pending' AND EXCLUDED.payment_status IN ('paid', 'failed', 'expired'))
        OR (o.payment_status IN ('failed', 'expired') AND EXCLUDED.payment_status = 'paid')
        OR (o.payment_status = 'paid' AND EXCLUDED.payment_status = 'refunded'))
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
"""


def migrate_sqlite(sqlite_path: Path, database_url: str, tenant_slug: str, schema: str = "payments",
                   *, dry_run: bool = False, progress: Progress | None = None) -> Report:
    started = time.monotonic()
    report = Report()
    valid: dict[str, V1Order] = {}
    total = count_v1(sqlite_path) if progress else 0  # rows v1 adds meanwhile are read too
    if progress:
        progress("reading", 0, total)
    for order, order_id, why in read_v1(sqlite_path):
        report.read += 1
        if progress and report.read % PROGRESS_EVERY == 0:
            progress("reading", report.read, max(total, report.read))
        if order is None:
            report.bad.append((order_id, why))
        else:
            valid[order_id] = order
    with psycopg.connect(database_url, options=f"-c search_path={schema}") as conn:
        row = conn.execute("SELECT id FROM tenants WHERE slug = %s", (tenant_slug,)).fetchone()
        if row is None:
            raise MigrationProblem(f"no tenant '{tenant_slug}' in v2 (`dualstack tenant add {tenant_slug} ...`)")
        tenant_id = row[0]
        with conn.transaction(force_rollback=dry_run):
            conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))
            conn.execute("CREATE TEMPORARY TABLE migration_stage (order_id text, name text, email text, phone text, "
                         "amount bigint, method text, status text) ON COMMIT DROP")
            orders = list(valid.values())
            if progress:
                progress("reading", report.read, report.read)
                progress("staging", 0, len(orders))
            for start in range(0, len(orders), BATCH_ROWS):
                with conn.cursor().copy("COPY migration_stage FROM STDIN") as copy:
                    for o in orders[start:start + BATCH_ROWS]:
                        copy.write_row((o.order_id, o.name, o.email, o.phone, o.amount, o.method, o.status))
                if progress:
                    progress("staging", min(start + BATCH_ROWS, len(orders)), len(orders))
            if progress:
                progress("upserting", 0, 1)
            result = conn.execute(_UPSERT, {"tenant": tenant_id}).fetchone()
            if progress:
                progress("verifying", 0, 1)
            report.inserted, report.updated = (int(result[0]), int(result[1])) if result else (0, 0)
            stored = {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
                "SELECT order_id, gross_amount, email, payment_status FROM orders")}
            for order_id, order in valid.items():
                have = stored.get(order_id)
                if have is None:
                    report.differences.append((order_id, "missing in v2"))
                    continue
                amount, email, status = have
                if checksum(order_id, amount, email, status) == checksum(order_id, order.amount, order.email,
                                                                         order.status):
                    continue
                if amount == order.amount and email.lower() == order.email.lower():
                    report.kept_newer += 1  # only the status differs: v2 moved on, precedence kept it
                else:
                    report.differences.append((order_id, "amount or email differs between v1 and v2"))
            report.unchanged = len(valid) - report.inserted - report.updated - len(report.differences)
    report.seconds = time.monotonic() - started
    return report

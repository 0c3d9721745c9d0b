"""One migration pass: read v1's store, judge its money-moving claims, upsert, verify.

`--dry-run` does all of it in a transaction that is rolled back, and reports what would change.
"""

from __future__ import annotations

import time
from typing import Final

import psycopg

from controlplane.evidence import EvidenceCheck, Progress
from controlplane.migrate.claims import judge_claims
from controlplane.migrate.report import MigrationProblem, Report
from controlplane.migrate.rows import V1Order, order_from
from controlplane.migrate.stores import V1Store
from controlplane.migrate.upsert import upsert
from controlplane.migrate.verify import verify

PROGRESS_EVERY: Final = 10_000


def read(store: V1Store, report: Report, progress: Progress | None) -> dict[str, V1Order]:
    """Every valid order by id; bad rows go to the report."""
    valid: dict[str, V1Order] = {}
    total = store.count() if progress else 0  # rows v1 adds meanwhile are read too
    if progress:
        progress("reading", 0, total)
    for page in store.pages():
        for raw in page:
            report.read += 1
            if progress and report.read % PROGRESS_EVERY == 0:
                progress("reading", report.read, max(total, report.read))
            order, why = order_from(raw)
            if order is None:
                report.bad.append((str(raw.order_id)[:60], why))
            else:
                valid[order.order_id] = order
    if progress:
        progress("reading", report.read, report.read)
    return valid


def migrate(store: V1Store, database_url: str, tenant_slug: str, schema: str = "payments",
            *, dry_run: bool = False, progress: Progress | None = None,
            evidence: EvidenceCheck | None = None) -> Report:
    """One pass. `evidence` decides on money-moving v1 statuses (default: Get Status at the Core API
    the environment names); keep one across passes so refuted claims are not asked again at once."""
    started = time.monotonic()
    report = Report()
    valid = read(store, report, progress)
    evidence = evidence if evidence is not None else EvidenceCheck.from_environment()
    with psycopg.connect(database_url, options=f"-c search_path={schema}", autocommit=True) as conn:
        row = conn.execute("SELECT id, midtrans_environment FROM tenants WHERE slug = %s", (tenant_slug,)).fetchone()
        if row is None:
            raise MigrationProblem(f"no tenant '{tenant_slug}' in v2 (`dualstack tenant add {tenant_slug} ...`)")
        tenant_id, environment = row
        judgements = judge_claims(conn, tenant_id, environment, valid, evidence, progress)
        report.confirmed = sum(1 for j in judgements if j.confirmed)
        report.unconfirmed = [j for j in judgements if not j.confirmed]
        withheld = {j.claim.order_id for j in report.unconfirmed}
        with conn.transaction(force_rollback=dry_run):
            conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))
            report.inserted, report.updated = upsert(conn, tenant_id, list(valid.values()), withheld, progress)
            if progress:
                progress("verifying", 0, 1)
            verification = verify(conn, valid, withheld)
            report.differences, report.kept_newer = verification.differences, verification.kept_newer
            report.unchanged = len(valid) - report.inserted - report.updated - len(report.differences)
    report.seconds = time.monotonic() - started
    return report

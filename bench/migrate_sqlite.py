"""Migration throughput: a v1 orders.db of N rows into v2 (real PostgreSQL, as the application role).

    .venv/bin/python bench/migrate_sqlite.py [--rows 1000000]

Makes its own database, roles and SQLite file, and drops them afterwards. Prints rows per second
for a first run (all inserts) and a second (nothing to change).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from scratch_database import scratch_database  # bench/scratch_database.py, beside this file

from controlplane.db.tenants import NewTenant, TenantAdmin
from controlplane.evidence import EvidenceCheck
from controlplane.migrate import SqliteStore
from controlplane.migrate import migrate as migrate_orders
from standins.legacy_v1 import open_database


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    ns = parser.parse_args()
    with scratch_database() as database, tempfile.TemporaryDirectory() as tmp:
        TenantAdmin(database.admin_url, database.layout).add(NewTenant("bench", "Bench", "enterprise", "SB-Mid-server-BENCH01", "sandbox"))
        path = Path(tmp) / "orders.db"
        started = time.monotonic()
        db = open_database(path)
        rng = random.Random(1)
        statuses = ["PAID", "PENDING_PAYMENT", "EXPIRED", "paid", "pending"]
        db.execute("BEGIN")
        db.executemany("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                       "VALUES (?, ?, ?, ?, ?, 'midtrans', ?)",
                       ((f"O{i:09d}", f"Customer {i % 300_000}", f"c{i % 300_000}@example.com", "0812",
                         rng.randint(10_000, 500_000), rng.choice(statuses)) for i in range(ns.rows)))
        db.execute("COMMIT")
        db.close()
        print(f"made a {ns.rows:,}-row orders.db (300,000 customers) in {time.monotonic() - started:.1f}s")
        for label in ("first run (everything inserted)", "second run (nothing to change)"):
            # Get Status is not asked (no Midtrans here, and its cost is the rate limit's: N / rate):
            # paid rows go in as pending, reported; everything else is the migration's own work.
            report = migrate_orders(SqliteStore(path), database.app_url, "bench", evidence=EvidenceCheck(None))
            print(f"{label}: {report.read:,} rows in {report.seconds:.1f}s = {report.read / report.seconds:,.0f} "
                  f"rows/s; {report.inserted:,} inserted, {report.updated:,} updated, "
                  f"{report.unchanged:,} unchanged, {len(report.differences)} differences, "
                  f"{len(report.unconfirmed):,} paid on v1 left unconfirmed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

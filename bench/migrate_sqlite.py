"""Migration throughput: a v1 orders.db of N rows into v2 (real PostgreSQL, as the application role).

    .venv/bin/python bench/migrate_sqlite.py [--rows 1000000]

Makes its own database, roles and SQLite file, and drops them afterwards. Prints rows per second
for a first run (all inserts) and a second (nothing to change).
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from controlplane.db.layout import DatabaseLayout
from controlplane.db.migrate import migrate
from controlplane.db.tenants import NewTenant, TenantAdmin
from controlplane.migrate_sqlite import migrate_sqlite
from standins.legacy_v1 import open_database


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    ns = parser.parse_args()
    server = os.environ.get("DUALSTACK_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
    suffix = secrets.token_hex(3)
    name, layout = f"dualstack_bench_{suffix}", DatabaseLayout(owner_role=f"bench_{suffix}_owner",
                                                               app_role=f"bench_{suffix}_app")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    with tempfile.TemporaryDirectory() as tmp:
        try:
            admin = make_conninfo(server, dbname=name)
            migrate(admin, layout)
            TenantAdmin(admin, layout).add(NewTenant("bench", "Bench", "enterprise", "SB-Mid-server-BENCH01", "sandbox"))
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
            app = make_conninfo(admin, user=layout.app_role)
            for label in ("first run (everything inserted)", "second run (nothing to change)"):
                report = migrate_sqlite(path, app, "bench")
                print(f"{label}: {report.read:,} rows in {report.seconds:.1f}s = {report.read / report.seconds:,.0f} "
                      f"rows/s; {report.inserted:,} inserted, {report.updated:,} updated, "
                      f"{report.unchanged:,} unchanged, {len(report.differences)} differences")
        finally:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                for role in (layout.app_role, layout.owner_role):
                    conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())

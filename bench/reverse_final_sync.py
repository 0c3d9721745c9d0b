"""What the way back's final sync costs under the write hold, full and as a delta: a tenant with N
orders on v2, all already in v1's SQLite store, and a few changed since the preflight verified both
sides. Times a full reverse pass (what a cutover to v2's first pass does right after the flip, with
the writes still held), a full verification of both sides, and the verification of only the orders
v2 changed since the preflight (the final sync's), side by side.

    .venv/bin/python bench/reverse_final_sync.py [--orders 20000] [--changed 10]

Makes its own database, roles and SQLite file, and drops them afterwards.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from scratch_database import scratch_database  # bench/scratch_database.py, beside this file

from controlplane.db.tenants import NewTenant, TenantAdmin
from controlplane.reverse.run import reverse_pass, verify_both_sides
from controlplane.reverse.v1_stores import SqliteWriter
from standins.legacy_v1 import open_database


def _orders(admin_url: str, n: int) -> None:
    """n orders of tenant 'bench' on v2, last changed an hour ago."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        tenant_id = conn.execute("SELECT id FROM payments.tenants WHERE slug = 'bench'").fetchone()[0]  # type: ignore[index]
        customer = conn.execute("INSERT INTO payments.customers (tenant_id, email, phone, name) VALUES (%s, "
                                "'budi@example.com', '0812', 'Budi') RETURNING id", (tenant_id,)).fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO payments.orders (tenant_id, order_id, customer_id, customer_name, email, phone, "
                     "gross_amount, payment_method, created_at, updated_at) SELECT %s, 'B' || lpad(g::text, 7, '0'), "
                     "%s, 'Budi', 'budi@example.com', '0812', 10000 + g, 'bca', now() - interval '1 hour', "
                     "now() - interval '1 hour' FROM generate_series(1, %s) g", (tenant_id, customer, n))


def _timed(what: Callable[[], object]) -> float:
    started = time.perf_counter()
    what()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--changed", type=int, default=10, help="orders v2 changes after the preflight")
    ns = parser.parse_args()
    with scratch_database() as database, tempfile.TemporaryDirectory() as tmp:
        TenantAdmin(database.admin_url, database.layout).add(
            NewTenant("bench", "Bench", "enterprise", "SB-Mid-server-BENCH01", "sandbox"))
        path = Path(tmp) / "orders.db"
        open_database(path).close()
        writer = SqliteWriter(path, "upper")
        _orders(database.admin_url, ns.orders)
        reverse_pass(writer, database.app_url, "bench")  # v1 holds them all (untimed)
        first = _timed(lambda: reverse_pass(writer, database.app_url, "bench"))
        full = verify_both_sides(writer, database.app_url, "bench")
        preflight = reverse_pass(writer, database.app_url, "bench").watermark  # the preflight's last pass
        with psycopg.connect(database.admin_url, autocommit=True) as conn:
            conn.execute("UPDATE payments.orders SET payment_status = 'paid', updated_at = now() WHERE order_id IN "
                         "(SELECT order_id FROM payments.orders ORDER BY order_id LIMIT %s)", (ns.changed,))
        reverse_pass(writer, database.app_url, "bench", watermark=preflight)
        full_s = _timed(lambda: verify_both_sides(writer, database.app_url, "bench"))
        delta = verify_both_sides(writer, database.app_url, "bench", since=preflight)
        delta_s = _timed(lambda: verify_both_sides(writer, database.app_url, "bench", since=preflight))
    print(f"{ns.orders} orders on v2 and in v1's SQLite store, {ns.changed} changed since the preflight")
    print(f"{'full reverse pass':<28} {first:>8.3f} s")
    print(f"{'verify all (checked)':<28} {full_s:>8.3f} s  ({full.checked})")
    print(f"{'verify since preflight':<28} {delta_s:>8.3f} s  ({delta.checked})   full/delta {full_s / delta_s:>6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

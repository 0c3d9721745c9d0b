"""Reverse sync lag under load: orders created (and some paid) on v2 at a steady rate while the
follower (`dualstack reverse-sync --follow`'s own code) writes them into v1's store, both generations.

    .venv/bin/python bench/reverse_sync.py [--rate 50] [--seconds 20] [--interval-s 1] [--store sqlite postgresql]

The orders are written into v2's PostgreSQL as v2's application role, inside the tenant's row-level
security, the rows v2's create and settlement write (no HTTP: the figure is the sync's, not v2's).
A change's lag is from its commit on v2 to the moment a reader polling v1's store every 20 ms sees
the order there with that status or a later one. Makes its own databases, roles and SQLite file, and drops them afterwards.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo
from scratch_database import scratch_database  # bench/scratch_database.py, beside this file

from controlplane.db.tenants import NewTenant, TenantAdmin
from controlplane.reverse.follow import Follower
from controlplane.reverse.rows import behind
from controlplane.reverse.v1_stores import PostgresWriter, SqliteWriter, V1Writer
from standins.legacy_v1 import open_database
from standins.legacy_v1.stores import POSTGRESQL_SCHEMA

POLL_S = 0.02


def _load(app_url: str, rate: float, seconds: float, committed: dict[tuple[str, str], float],
          stop: threading.Event) -> None:
    """`rate` orders a second for `seconds`; every third is paid a moment later."""
    rng = random.Random(1)
    with psycopg.connect(app_url, autocommit=True, options="-c search_path=payments") as conn:
        tenant_id = conn.execute("SELECT id FROM tenants WHERE slug = 'bench'").fetchone()[0]  # type: ignore[index]
        with conn.transaction():
            conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))
            customer = conn.execute("INSERT INTO customers (tenant_id, email, phone, name) VALUES (%s, "
                                    "'budi@example.com', '0812', 'Budi') RETURNING id", (tenant_id,)).fetchone()[0]  # type: ignore[index]
        started, n, to_pay = time.monotonic(), 0, []
        while not stop.is_set() and time.monotonic() - started < seconds:
            due = started + n / rate
            time.sleep(max(0.0, due - time.monotonic()))
            order_id = f"B{n:07d}"
            with conn.transaction():
                conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))
                conn.execute("INSERT INTO orders (tenant_id, order_id, customer_id, customer_name, email, phone, "
                             "gross_amount, payment_method) VALUES (%s, %s, %s, 'Budi', 'budi@example.com', '0812', "
                             "%s, 'bca')", (tenant_id, order_id, customer, rng.randint(10_000, 500_000)))
            committed[(order_id, "pending")] = time.time()
            if n % 3 == 0:
                to_pay.append(order_id)
            if len(to_pay) > 2:  # paid a few orders later, as a buyer pays
                paid = to_pay.pop(0)
                with conn.transaction():
                    conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))
                    conn.execute("UPDATE orders SET payment_status = 'paid', updated_at = now() WHERE order_id = %s",
                                 (paid,))
                committed[(paid, "paid")] = time.time()
            n += 1


def _watch(writer: V1Writer, committed: dict[tuple[str, str], float], seen: dict[tuple[str, str], float],
           stop: threading.Event) -> None:
    while not stop.is_set():
        waiting = [key for key in list(committed) if key not in seen]
        if waiting:
            held = writer.statuses({order_id for order_id, _ in waiting})
            now = time.time()
            for order_id, status in waiting:
                if order_id in held and behind(held[order_id], status) is None:  # this status, or a later one
                    seen[(order_id, status)] = now
        time.sleep(POLL_S)


def run(generation: str, writer: V1Writer, app_url: str, ns: argparse.Namespace) -> str:
    committed: dict[tuple[str, str], float] = {}
    seen: dict[tuple[str, str], float] = {}
    stop, loaded = threading.Event(), threading.Event()
    follower = Follower(writer, app_url, "bench")

    def follow() -> None:
        while not (loaded.is_set() and all(key in seen for key in list(committed))) and not stop.is_set():
            outcome = follower.once()
            assert outcome.error is None, outcome.error
            time.sleep(ns.interval_s)

    threads = [threading.Thread(target=follow), threading.Thread(target=_watch, args=(writer, committed, seen, stop))]
    for thread in threads:
        thread.start()
    try:
        _load(app_url, ns.rate, ns.seconds, committed, stop)
        loaded.set()
        deadline = time.monotonic() + 30 + ns.interval_s * 3
        while time.monotonic() < deadline and not all(key in seen for key in list(committed)):
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    lags = sorted(seen[key] - committed[key] for key in committed if key in seen)
    missing = len(committed) - len(lags)
    p50 = statistics.median(lags)
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
    return (f"{generation:<11} {len(committed):>7} {p50:>8.2f} {p99:>8.2f} {max(lags):>8.2f} {p99 / ns.interval_s:>9.2f}"
            f"{'' if not missing else f'  {missing} never seen'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50.0, help="orders a second created on v2")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval-s", type=float, default=1.0, help="the follower's pause between passes")
    parser.add_argument("--store", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"])
    ns = parser.parse_args()
    print(f"{ns.rate:g} orders/s for {ns.seconds:g} s on v2 (every third paid), follower interval {ns.interval_s:g} s")
    print(f"{'v1 store':<11} {'changes':>7} {'p50 s':>8} {'p99 s':>8} {'max s':>8} {'p99/intv':>9}")
    for generation in ns.store:
        with scratch_database() as database, tempfile.TemporaryDirectory() as tmp:
            TenantAdmin(database.admin_url, database.layout).add(
                NewTenant("bench", "Bench", "enterprise", "SB-Mid-server-BENCH01", "sandbox"))
            writer: V1Writer
            if generation == "sqlite":
                path = Path(tmp) / "orders.db"
                open_database(path).close()
                writer = SqliteWriter(path, "upper")
            else:
                with psycopg.connect(database.admin_url, autocommit=True) as conn:
                    conn.execute("CREATE SCHEMA v1")
                    conn.execute(f"SET search_path = v1; {POSTGRESQL_SCHEMA}")
                writer = PostgresWriter(make_conninfo(database.admin_url, options="-c search_path=v1"), "v1")
            print(run(generation, writer, database.app_url, ns), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

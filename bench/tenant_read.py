"""One tenant-scoped read (the status read's SELECT under row-level security), six ways, with psycopg
as v2 uses it (autocommit, dict rows), on a scratch database (bench/scratch_database.py):

    tx           BEGIN; set_config; SELECT; COMMIT: four round trips (v2's tenant_tx)
    pipeline-4   the same four statements in one pipeline: one flush, one Sync
    pipeline-2   set_config and SELECT in one pipeline, no BEGIN/COMMIT (one implicit transaction up to
                 the Sync)
    simple       one simple-query string with both statements (client-side binding: never prepared)
    function-sql the same function body in LANGUAGE sql (planned again on every call)
    function     payments.order_status(), migration 0009, PL/pgSQL: one statement, one round trip,
                 what v2 uses

    .venv/bin/python bench/tenant_read.py [--reads 3000] [--rounds 2]

Prints wall, client CPU and server CPU (the connection's backend, from /proc) microseconds per read (median over rounds, each way in turn per round).
Each way is checked first: the row comes back, and the connection holds no tenant afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import ClientCursor
from psycopg.rows import dict_row
from router import tree_cpu_s  # bench/router.py, beside this file
from scratch_database import ScratchDatabase, scratch_database  # bench/scratch_database.py, beside this file
from v2 import SEEDED, seed_orders  # bench/v2.py: the same tenant and orders

SELECT = ("SELECT order_id, payment_status, gross_amount, customer_name, email, snap_token IS NOT NULL AS has_snap, "
          "created_at > now() - make_interval(secs => %s) AS recent FROM orders WHERE order_id = %s")
BIND = "SELECT set_config('app.tenant_id', %s, true)"


def ways(conn: psycopg.Connection[Any], tenant: uuid.UUID) -> dict[str, Callable[[str], Any]]:
    def tx(order_id: str) -> Any:
        with conn.transaction():
            conn.execute(BIND, (str(tenant),))
            return conn.execute(SELECT, (3600.0, order_id)).fetchone()

    def pipeline(order_id: str, explicit: bool) -> Any:
        with conn.pipeline():
            if explicit:
                conn.execute("BEGIN")
            conn.execute(BIND, (str(tenant),))
            cursor = conn.execute(SELECT, (3600.0, order_id))
            if explicit:
                conn.execute("COMMIT")
        return cursor.fetchone()

    simple = ClientCursor(conn)

    def simple_query(order_id: str) -> Any:
        simple.execute(f"{BIND}; {SELECT}", (str(tenant), 3600.0, order_id))
        simple.nextset()
        return simple.fetchone()

    def function(name: str) -> Callable[[str], Any]:
        query = f"SELECT * FROM {name}(%s, %s, %s)"
        return lambda order_id: conn.execute(query, (tenant, order_id, 3600.0)).fetchone()

    return {"tx": tx, "pipeline-4": lambda o: pipeline(o, True), "pipeline-2": lambda o: pipeline(o, False),
            "simple": simple_query, "function-sql": function("order_status_sql"), "function": function("order_status")}


def _sql_variant(database: ScratchDatabase) -> None:
    """order_status() as LANGUAGE sql, for comparison only (the migration's is PL/pgSQL)."""
    schema = database.layout.schema
    with psycopg.connect(database.admin_url, autocommit=True) as conn:
        body = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'order_status'").fetchone()
        assert body is not None
        select = body[0].split("RETURN QUERY", 1)[1].rsplit(";", 1)[0]
        conn.execute(
            f'CREATE FUNCTION "{schema}".order_status_sql(tenant uuid, wanted_order_id text, recent_s double precision) '
            "RETURNS TABLE (order_id text, payment_status text, gross_amount bigint, customer_name text, email text, "
            "has_snap boolean, recent boolean) LANGUAGE sql AS "
            f"$$ SELECT set_config('app.tenant_id', tenant::text, true); {select}; $$")
        conn.execute(f'GRANT EXECUTE ON FUNCTION "{schema}".order_status_sql(uuid, text, double precision) '
                     f'TO "{database.layout.app_role}"')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=3000, help="reads per way and round")
    parser.add_argument("--rounds", type=int, default=2)
    ns = parser.parse_args()
    with scratch_database() as database:
        seed_orders(database)
        _sql_variant(database)
        with psycopg.connect(database.admin_url) as admin:
            row = admin.execute(f"SELECT id FROM \"{database.layout.schema}\".tenants WHERE slug = 'bench'").fetchone()
            assert row is not None
        with psycopg.connect(database.app_url, autocommit=True, row_factory=dict_row,
                             options=f"-c search_path={database.layout.schema}") as conn:
            every = ways(conn, row[0])
            for name, read in every.items():
                assert read("SEED-2")["payment_status"] == "paid", name
                assert conn.execute("SELECT count(*) AS n FROM orders").fetchone() == {"n": 0}, name
            backend = conn.info.backend_pid  # its CPU is the server's share, this connection's alone
            wall: dict[str, list[float]] = {name: [] for name in every}
            cpu: dict[str, list[float]] = {name: [] for name in every}
            server: dict[str, list[float]] = {name: [] for name in every}
            for _ in range(ns.rounds):
                for name, read in every.items():
                    cpu_before, wall_before, server_before = time.process_time(), time.perf_counter(), tree_cpu_s(backend)
                    for i in range(ns.reads):
                        read(f"SEED-{i % SEEDED + 1}")
                    wall[name].append((time.perf_counter() - wall_before) / ns.reads * 1e6)
                    cpu[name].append((time.process_time() - cpu_before) / ns.reads * 1e6)
                    server[name].append((tree_cpu_s(backend) - server_before) / ns.reads * 1e6)
    print(f"\n{ns.reads} reads per way and round, {ns.rounds} rounds (medians); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print(f"{'way':13} {'us/read':>8} {'client CPU us/read':>19} {'server CPU us/read':>19}")
    for name in wall:
        print(f"{name:13} {statistics.median(wall[name]):8.0f} {statistics.median(cpu[name]):19.0f} "
              f"{statistics.median(server[name]):19.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

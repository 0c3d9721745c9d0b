"""What keeping tenant secrets under row-level security costs: v2's uncached tenant read (the row,
then its secrets bound to the tenant, pipelined) against a plain one-statement read of one table,
and the router's notification key lookup (a miss through notification_key(slug), and a cached hit).

    .venv/bin/python bench/tenant_secrets.py [--reads 2000]

Makes its own database and roles on DUALSTACK_BENCH_ADMIN_URL (default: the local PostgreSQL) and
drops them afterwards. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from scratch_database import scratch_database  # bench/scratch_database.py, beside this file

from controlplane.db.tenants import NewTenant, TenantAdmin
from proxy.router.notification_keys import DatabaseKeyStore
from proxy.v2.db import PaymentsDB, make_pool


async def timed(label: str, reads: int, call: Callable[[], Awaitable[object]]) -> None:
    samples = []
    for _ in range(reads):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    print(f"{label:58} p50 {statistics.median(samples):7.0f} us   p99 {samples[int(len(samples) * 0.99)]:7.0f} us")


async def run(app_url: str, router_url: str, reads: int) -> None:
    pool = make_pool(app_url, "payments", max_size=1)
    await pool.open()
    try:
        db = PaymentsDB(pool, tenant_ttl_s=0.0)  # every read goes to the database

        async def one_statement() -> object:
            async with pool.connection() as conn:
                cursor = await conn.execute("SELECT id, slug, name, status, plan, max_orders_per_month, "
                                            "midtrans_environment FROM tenants WHERE slug = 'bench'")
                return await cursor.fetchone()

        await timed("one statement, tenants only (the old read, minus secrets)", reads, one_statement)
        await timed("v2 tenant read: row + secrets bound to it, one round trip", reads,
                    lambda: db.tenant_by_slug("bench"))
    finally:
        await pool.close()
    miss = DatabaseKeyStore(router_url, ttl_s=0.0, negative_ttl_s=0.0)
    hit = DatabaseKeyStore(router_url)
    try:
        await timed("router key, miss (notification_key(slug))", reads, lambda: miss.key_for("bench"))
        await timed("router key, cached", reads, lambda: hit.key_for("bench"))
    finally:
        await miss.close()
        await hit.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=2000)
    ns = parser.parse_args()
    with scratch_database() as database:
        tenants = TenantAdmin(database.admin_url, database.layout)
        tenants.add(NewTenant("bench", "Bench", "pro", "SB-Mid-server-" + secrets.token_hex(10), "sandbox"))
        for i in range(999):  # secrets of other tenants beside it
            tenants.add(NewTenant(f"t{i:04d}", "T", "pro", "SB-Mid-server-" + secrets.token_hex(10), "sandbox"))
        asyncio.run(run(database.app_url, database.router_url, ns.reads))
    return 0


if __name__ == "__main__":
    sys.exit(main())

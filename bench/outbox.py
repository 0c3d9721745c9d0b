"""The outbox's cost to the payment path, and its delivery rate, on real PostgreSQL and a real SMTP
relay (aiosmtpd) on loopback.

    .venv/bin/python bench/outbox.py [--orders 200] [--concurrency 16]

Two tenants on one v2 (in this process, as the application role): one whose relay accepts, one whose
relay accepts connections and never answers (a hung relay). Both create --orders orders and settle
them with --concurrency notifications in flight; creates and webhook answers are timed per tenant,
and the healthy tenant's emails per second from the first create to the last email accepted. It
makes its own database and roles on DUALSTACK_BENCH_ADMIN_URL (default: the local PostgreSQL) and
drops them afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web
from aiosmtpd.controller import Controller
from psycopg.conninfo import make_conninfo
from router import free_port  # bench/router.py, beside this file
from scratch_database import scratch_database  # bench/scratch_database.py, beside this file

from controlplane.db.layout import DatabaseLayout
from controlplane.db.tenants import NewTenant, TenantAdmin
from proxy.v2.app import create_v2_app
from proxy.v2.settings import V2Settings, tenant_rule
from standins.midtrans import FakeMidtrans


class Counting:
    def __init__(self) -> None:
        self.accepted = 0
        self.last_s = 0.0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.accepted += 1
        self.last_s = time.perf_counter()
        return "250 OK"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run(ns: argparse.Namespace, admin_url: str, layout: DatabaseLayout) -> None:
    admin = TenantAdmin(admin_url, layout)
    midtrans = FakeMidtrans([])
    handler = Counting()
    relay_port = free_port()
    relay = Controller(handler, hostname="127.0.0.1", port=relay_port)
    relay.start()
    hung = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    hung_port = hung.sockets[0].getsockname()[1]
    keys = {}
    for slug, port in (("healthy", relay_port), ("hung", hung_port)):
        keys[slug] = "SB-Mid-server-" + secrets.token_hex(8)
        admin.add(NewTenant(slug, slug, "enterprise", keys[slug], "sandbox", email_from=f"shop@{slug}.example",
                            smtp_host="127.0.0.1", smtp_port=port, smtp_security="none"))
        midtrans.add_key(keys[slug])
    fake_runner = web.AppRunner(midtrans.app())
    await fake_runner.setup()
    fake_site = web.TCPSite(fake_runner, "127.0.0.1", 0)
    await fake_site.start()
    fake_port = fake_runner.addresses[0][1]
    rule, base_domain = tenant_rule(None, "agentbar.ai")
    settings = V2Settings(database_url=make_conninfo(admin_url, user=layout.app_role), rule=rule,
                          base_domain=base_domain, schema=layout.schema,
                          snap_urls={"sandbox": f"http://127.0.0.1:{fake_port}/sandbox/snap/v1/transactions"},
                          core_urls={"sandbox": f"http://127.0.0.1:{fake_port}/sandbox"})  # Get Status confirms
    runner = web.AppRunner(create_v2_app(settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    limit = asyncio.Semaphore(ns.concurrency)
    timings: dict[str, dict[str, list[float]]] = {s: {"create": [], "webhook": []} for s in keys}
    async with aiohttp.ClientSession() as session:

        async def timed(slug: str, kind: str, path: str, body: dict[str, Any]) -> None:
            async with limit:
                started = time.perf_counter()
                async with session.post(f"{base}{path}?tenant={slug}", json=body) as response:
                    await response.read()
                    assert response.status == 200, (slug, kind, response.status)
                timings[slug][kind].append(time.perf_counter() - started)

        first = time.perf_counter()
        await asyncio.gather(*(timed(slug, "create", "/payment/create", {
            "orderId": f"{slug}-{n}", "amount": 1000 + n, "email": "b@example.com", "phone": "1", "name": "B"})
            for slug in keys for n in range(ns.orders)))
        # The buyers pay: Midtrans holds each settlement (Get Status confirms it), then notifies.
        await asyncio.gather(*(timed(slug, "webhook", "/webhooks/midtrans", midtrans.notification(
            midtrans.set_status(f"{slug}-{n}", "settlement", server_key=keys[slug]), "settlement"))
            for slug in keys for n in range(ns.orders)))
        deadline = time.perf_counter() + 120
        while handler.accepted < 2 * ns.orders and time.perf_counter() < deadline:  # noqa: ASYNC110 (another thread counts)
            await asyncio.sleep(0.05)
    print(f"\n{ns.orders} orders per tenant, {ns.concurrency} requests in flight, {os.cpu_count()} cores shared "
          "with PostgreSQL and the relay\n")
    print(f"{'tenant':8} {'relay':8} {'create p50':>11} {'p99 ms':>7} {'webhook p50':>12} {'p99 ms':>7}")
    for slug in keys:
        create, webhook = timings[slug]["create"], timings[slug]["webhook"]
        print(f"{slug:8} {'accepts' if slug == 'healthy' else 'hangs':8} {statistics.median(create) * 1000:11.2f} "
              f"{percentile(create, 0.99):7.2f} {statistics.median(webhook) * 1000:12.2f} "
              f"{percentile(webhook, 0.99):7.2f}")
    elapsed = handler.last_s - first
    print(f"\nhealthy tenant: {handler.accepted} emails accepted by the relay (of {2 * ns.orders}), "
          f"{handler.accepted / elapsed:.0f} emails/s from the first create to the last email")
    await runner.cleanup()
    await fake_runner.cleanup()
    hung.close()
    relay.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    ns = parser.parse_args()
    with scratch_database() as database:
        asyncio.run(run(ns, database.admin_url, database.layout))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shadow results stored in PostgreSQL: counts, redacted samples, retention."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp import web

from controlplane.db.migrate import bundled_migrations, migrate
from controlplane.shadow.samples import SAMPLES_PER_FIELD, STATE_SCHEMA
from tests.conftest import Database, RouterFactory, wait_until
from tests.proxy.test_mirror import config, start


@pytest.fixture(scope="module")
def state_db(database: Database) -> Database:
    layout = dataclasses.replace(database.layout, schema=STATE_SCHEMA)
    migrate(database.admin_url, layout, migrations=bundled_migrations("state_migrations"))
    return dataclasses.replace(database, layout=layout)


def pii_app(amount: int, email: str) -> web.Application:
    async def order(request: web.Request) -> web.Response:
        return web.json_response({"success": True, "order": {
            "id": request.match_info["id"], "status": "PAID", "totalAmount": amount, "email": email,
            "customerName": "Budi Santoso", "note": "call 081234567890"}})

    app = web.Application()
    app.router.add_get("/orders/{id}/status", order)
    return app


async def test_results_are_stored_redacted_and_bounded(aiohttp_server: Any, make_router: RouterFactory,
                                                       state_db: Database) -> None:
    v1, v2 = await start(aiohttp_server, pii_app(100, "budi@example.com"), pii_app(101, "budi.s@example.com"))
    router = await make_router(config(v1, v2, "{noise_sample_rate: 0}"), state_database_url=state_db.app_url)
    requests = SAMPLES_PER_FIELD + 5
    async with aiohttp.ClientSession() as session:
        for i in range(requests):
            async with session.get(f"{router.url}/orders/O{i}/status", headers={"Host": "shop.agentbar.ai"}) as r:
                assert r.status == 200

    def stored() -> tuple[Any, ...]:
        with psycopg.connect(state_db.admin_url) as conn:
            counts = conn.execute(f"SELECT sum(mismatches), sum(matches) FROM {STATE_SCHEMA}.shadow_counts "
                                  "WHERE tenant = 'shop' AND endpoint = 'GET /orders/{id}/status'").fetchone()
            samples = conn.execute(f"SELECT path, kind, primary_value, shadow_value, request_id FROM "
                                   f"{STATE_SCHEMA}.shadow_samples WHERE tenant = 'shop' ORDER BY id").fetchall()
            buckets = conn.execute(f"SELECT primary_buckets, shadow_buckets FROM {STATE_SCHEMA}.shadow_counts "
                                   "WHERE tenant = 'shop'").fetchall()
        return counts, samples, buckets

    await wait_until(lambda: stored()[0] == (requests, 0), timeout_s=10)
    _, samples, buckets = stored()
    paths = {path for path, *_ in samples}
    assert paths == {"$.order.totalAmount", "$.order.email"}
    assert sum(1 for s in samples if s[0] == "$.order.totalAmount") == SAMPLES_PER_FIELD  # retention per field
    amount = next(s for s in samples if s[0] == "$.order.totalAmount")
    assert (amount[1], amount[2], amount[3]) == ("value_changed", 100, 101)  # what explains the difference stays
    dump = json.dumps([list(s) for s in samples])
    for secret in ("budi", "Budi", "081234567890"):
        assert secret not in dump  # PII never reaches storage
    assert sum(sum(p) for p, _ in buckets) == requests and sum(sum(s) for _, s in buckets) == requests


async def test_several_routers_share_the_store(aiohttp_server: Any, make_router: RouterFactory,
                                               state_db: Database) -> None:
    v1, v2 = await start(aiohttp_server, pii_app(1, "a@b.co"), pii_app(1, "a@b.co"))
    yaml = config(v1, v2, "{noise_sample_rate: 0}").replace("shop:", "replicas:")
    routers = [await make_router(yaml, state_database_url=state_db.app_url) for _ in range(2)]
    async with aiohttp.ClientSession() as session:
        for router in routers:
            for i in range(5):
                async with session.get(f"{router.url}/orders/R{i}/status", headers={"Host": "replicas.agentbar.ai"}):
                    pass

    def matches() -> int:
        with psycopg.connect(state_db.admin_url) as conn:
            row = conn.execute(f"SELECT coalesce(sum(matches), 0) FROM {STATE_SCHEMA}.shadow_counts "
                               "WHERE tenant = 'replicas'").fetchone()
        return int(row[0]) if row else 0

    await wait_until(lambda: matches() == 10, timeout_s=10)

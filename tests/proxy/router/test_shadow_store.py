"""Shadow results stored in PostgreSQL: counts, redacted samples, retention."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp import web

from controlplane.db.migrate import bundled_migrations, migrate
from controlplane.shadow.samples import SAMPLES_PER_FIELD
from controlplane.state.schema import STATE_SCHEMA
from tests.conftest import Database, RouterFactory, shadow_config, start_pair, wait_until


@pytest.fixture(scope="module")
def state_db(database: Database) -> Database:
    layout = dataclasses.replace(database.layout, schema=STATE_SCHEMA)
    migrate(database.admin_url, layout, migrations=bundled_migrations("controlplane.state"))
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
    v1, v2 = await start_pair(aiohttp_server, pii_app(100, "budi@example.com"), pii_app(101, "budi.s@example.com"))
    router = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 0}"), state_database_url=state_db.router_url)
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
    v1, v2 = await start_pair(aiohttp_server, pii_app(1, "a@b.co"), pii_app(1, "a@b.co"))
    yaml = shadow_config(v1, v2, "{noise_sample_rate: 0}").replace("shop", "replicas")
    routers = [await make_router(yaml, state_database_url=state_db.router_url) for _ in range(2)]
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


async def test_noise_is_learned_from_every_router_through_the_state_database(state_db: Database) -> None:
    from controlplane.state.shadow_noise import NoiseLearner
    from proxy.router.shadow_store import ShadowStore

    endpoint, tenant = "GET /orders/{id}/status", "noise" + os.urandom(3).hex()
    replicas = [ShadowStore(state_db.router_url, STATE_SCHEMA) for _ in range(2)]
    learners = [NoiseLearner(), NoiseLearner()]
    for store, learner in zip(replicas, learners, strict=True):
        store.learner = learner
        await store.open()
    try:
        # Only the first replica sent pairs to the primary twice; the second learns from them.
        for _ in range(4):
            learners[0].record(tenant, endpoint, "primary", ["$.generatedAt"])
            learners[0].record(tenant, endpoint, "shadow", ["$.generatedAt"])
        await replicas[0].flush()
        assert learners[1].learned(tenant, endpoint, frozenset()) == set()
        await replicas[1].read_noise()
        assert learners[1].learned(tenant, endpoint, frozenset()) == {"$.generatedAt"}
        # The second replica's own pairs add to the shared totals: its primary reads agree with
        # each other while its shadow keeps differing, so the field is no longer noise for anyone.
        for _ in range(40):
            learners[1].record(tenant, endpoint, "primary", [])
            learners[1].record(tenant, endpoint, "shadow", ["$.generatedAt"])
        await replicas[1].flush()
        await replicas[0].read_noise()
        assert learners[0].learned(tenant, endpoint, frozenset()) == set()  # 4/44 against 44/44
    finally:
        for store in replicas:
            await store.close()


async def test_counts_record_which_backend_was_primary(aiohttp_server: Any, make_router: RouterFactory,
                                                       state_db: Database) -> None:
    v1, v2 = await start_pair(aiohttp_server, pii_app(100, "a@example.com"), pii_app(100, "a@example.com"))
    for backend in ("v1", "v2"):
        router = await make_router(shadow_config(v1, v2, "{noise_sample_rate: 0}", backend=backend),
                                   state_database_url=state_db.router_url)
        async with aiohttp.ClientSession() as session, session.get(
                f"{router.url}/orders/P{backend}/status", headers={"Host": "shop.agentbar.ai"}) as r:
            assert r.status == 200

    def stored() -> dict[str, int]:
        with psycopg.connect(state_db.admin_url) as conn:
            rows = conn.execute(f"SELECT primary_backend, sum(matches) FROM {STATE_SCHEMA}.shadow_counts "
                                "WHERE tenant = 'shop' AND endpoint = 'GET /orders/{id}/status' "
                                "GROUP BY primary_backend").fetchall()
        return {backend: int(n) for backend, n in rows}

    await wait_until(lambda: {"v1", "v2"} <= stored().keys(), timeout_s=10)

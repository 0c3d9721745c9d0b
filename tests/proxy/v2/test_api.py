"""Order status, admin stats and the OpenAPI document of v2 (health: test_health.py)."""

from __future__ import annotations

import aiohttp
import psycopg
from aiohttp import web

from proxy.v2.openapi import DOCUMENT
from tests.fixtures.v2_stack import Stack


async def test_order_status_has_v1s_shape_and_is_tenant_scoped(stack: Stack) -> None:
    a, b = stack.add_tenant(), stack.add_tenant()
    await stack.create(a, "S-1", amount=77000)
    status, body = await stack.request("GET", "/orders/S-1/status", a)
    assert (status, body) == (200, {"success": True, "order": {
        "id": "S-1", "status": "PENDING_PAYMENT", "totalAmount": 77000, "customerName": "Budi",
        "email": "Buyer@Example.com"}})
    status, body = await stack.request("GET", "/orders/S-1/status", b)  # another tenant's order
    assert status == 404 and body["success"] is False
    status, _ = await stack.request("GET", "/orders/NOPE/status", a)
    assert status == 404


async def test_an_order_id_no_order_can_have_is_404_without_asking_the_database(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "S-1", amount=77000)
    with psycopg.connect(stack.database.admin_url) as locker:  # a read that asked would wait on this lock
        locker.execute(f"LOCK TABLE {stack.database.layout.schema}.orders IN ACCESS EXCLUSIVE MODE")
        for outside in ("S-1%00", "S-1%00x", "S-1%20", "S-1%2F..", "S-1%C3%A9", "x" * 51):
            status, body = await stack.request("GET", f"/orders/{outside}/status", tenant)
            assert (status, body["error"]) == (404, "Order not found"), outside
        locker.rollback()
    status, _ = await stack.request("GET", "/orders/S-1/status", tenant)
    assert status == 200


async def test_tenant_from_a_trusted_header_or_the_host(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "S-H", amount=1000)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{stack.url}/orders/S-H/status", headers={"X-Tenant-Slug": tenant.slug}) as r:
            assert r.status == 200  # loopback is a trusted proxy by default
        async with session.get(f"{stack.url}/orders/S-H/status",
                               headers={"Host": f"{tenant.slug}.agentbar.ai"}) as r:
            assert r.status == 200


async def test_admin_stats_need_that_tenants_token(stack: Stack) -> None:
    a, b = stack.add_tenant(), stack.add_tenant()
    await stack.create(a, "ST-1", amount=1000)
    await stack.create(a, "ST-2", amount=2000)
    await stack.notify("ST-2", transaction_status="settlement")
    await stack.create(b, "ST-3", amount=9000)
    status, body = await stack.request("GET", "/admin/stats", a, headers={"Authorization": f"Bearer {a.admin_token}"})
    assert (status, body) == (200, {"success": True, "stats": {
        "pending": 1, "paid": 1, "failed": 0, "expired": 0, "refunded": 0, "revenue": 2000}})
    for headers in ({}, {"Authorization": f"Bearer {b.admin_token}"}, {"Authorization": "Bearer nope"}):
        status, body = await stack.request("GET", "/admin/stats", a, headers=headers)
        assert (status, body["error"]) == (401, "unauthorized")


async def test_the_openapi_document_matches_the_routes(stack: Stack) -> None:
    status, document = await stack.request("GET", "/openapi.json")
    assert status == 200 and document == DOCUMENT
    routes = {(r.method.lower(), r.resource.canonical) for r in stack.app.router.routes()
              if isinstance(r.resource, web.Resource) and r.method != "HEAD"}
    documented = {(method, path) for path, item in DOCUMENT["paths"].items() for method in item}
    assert routes == documented

"""v2's /health (its own keys plus v1's where free), /health/ready and /health/live."""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from proxy.v2.app import create_v2_app
from proxy.v2.settings import V2Settings, tenant_rule
from tests.fixtures.v2_stack import Stack

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def assert_clock(body: dict[str, Any]) -> None:
    """v1's keys: uptime in seconds (a number), timestamp as Date.toISOString(), the service's name."""
    assert isinstance(body.pop("uptime"), float | int)
    assert ISO_UTC.fullmatch(body.pop("timestamp"))
    assert body.pop("service") == "dualstack-v2"


async def test_health_keeps_v2s_keys_and_adds_v1s(stack: Stack) -> None:
    tenant = stack.add_tenant()
    status, body = await stack.request("GET", "/health")
    assert status == 200
    assert_clock(body)
    assert body == {"status": "ok", "version": "2.0.0", "database": "up"}  # v2's status wins over "healthy"
    status, body = await stack.request("GET", "/health", tenant)
    assert body["tenant"] == tenant.slug


async def test_ready_and_live_with_the_database_up(stack: Stack) -> None:
    status, body = await stack.request("GET", "/health/ready")
    assert status == 200
    assert_clock(body)
    assert body == {"status": "ready", "database": "up"}
    status, body = await stack.request("GET", "/health/live")
    assert status == 200
    assert_clock(body)
    assert body == {"status": "alive"}


async def test_health_and_requests_with_the_database_down(aiohttp_server: Any) -> None:
    rule, domain = tenant_rule(None, "agentbar.ai")
    settings = V2Settings(database_url="postgresql://nobody@127.0.0.1:1/none", rule=rule, base_domain=domain)
    server = await aiohttp_server(create_v2_app(settings))
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/health")) as response:
            assert response.status == 503
            body = await response.json()
            assert_clock(body)
            assert body == {"status": "degraded", "version": "2.0.0", "database": "down"}
        async with session.get(server.make_url("/health/ready")) as response:
            assert response.status == 503
            body = await response.json()
            assert_clock(body)
            assert body == {"status": "not ready", "database": "down"}
        async with session.get(server.make_url("/health/live")) as response:  # alive: no restart for an outage
            assert response.status == 200
            assert (await response.json())["status"] == "alive"
        async with session.get(server.make_url("/orders/X/status?tenant=buatfilm")) as response:
            assert response.status == 503
            assert (await response.json())["error"] == "database_unavailable"


async def test_a_database_role_that_bypasses_row_level_security_is_refused(
        aiohttp_server: Any, stack: Stack, caplog: Any) -> None:
    """Tenant isolation is the database role's: given a superuser, v2 lends no connection (every
    tenant's rows would be visible to every request), answers 503 and says what to fix."""
    tenant = stack.add_tenant()
    await stack.create(tenant, "RLS-1")
    rule, domain = tenant_rule(None, "agentbar.ai")
    settings = V2Settings(database_url=stack.database.admin_url, rule=rule, base_domain=domain,
                          schema=stack.database.layout.schema)
    server = await aiohttp_server(create_v2_app(settings))
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/health/ready")) as response:
            assert response.status == 503
            assert (await response.json())["database"] == "down"
        async with session.get(server.make_url(f"/orders/RLS-1/status?tenant={tenant.slug}")) as response:
            assert response.status == 503
    assert any("bypasses row-level security" in r.getMessage() and "application role" in r.getMessage()
               for r in caplog.records)

"""CORS on v2, as a page on the tenant's site (or another site) calls it from a browser."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from controlplane.config.model import DEFAULT_PLATFORM_SUBDOMAINS
from controlplane.config.tenant import TenantRule
from proxy.serving.secret import Secret
from proxy.v2.cors import allowed_origins
from proxy.v2.db import TenantRecord
from tests.fixtures.v2_stack import Stack, Tenant

CORS_HEADERS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
                "Access-Control-Max-Age")


async def call(stack: Stack, method: str, path: str, tenant: Tenant, origin: str | None = None,
               **kwargs: Any) -> tuple[int, CIMultiDictProxy[str]]:
    """A request to the tenant's own host, as the browser sends it (Origin when given)."""
    headers = {"Host": f"{tenant.slug}.agentbar.ai", **kwargs.pop("headers", {})}
    if origin is not None:
        headers["Origin"] = origin
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{stack.url}{path}", headers=headers, **kwargs) as response:
        await response.read()
        return response.status, response.headers


def preflight_headers(method: str = "POST") -> dict[str, str]:
    return {"Access-Control-Request-Method": method, "Access-Control-Request-Headers": "content-type"}


async def test_a_preflight_from_the_tenants_own_host_is_allowed(stack: Stack) -> None:
    tenant = stack.add_tenant()
    for origin in (f"https://{tenant.slug}.agentbar.ai", f"http://{tenant.slug}.agentbar.ai"):
        status, headers = await call(stack, "OPTIONS", "/payment/create", tenant, origin,
                                     headers=preflight_headers())
        assert status == 204
        assert headers["Access-Control-Allow-Origin"] == origin
        assert "POST" in headers["Access-Control-Allow-Methods"]
        assert "Content-Type" in headers["Access-Control-Allow-Headers"]
        assert headers["Access-Control-Max-Age"] == "600"
        assert headers["Vary"] == "Origin"
    status, headers = await call(stack, "OPTIONS", "/admin/stats", tenant, f"https://{tenant.slug}.agentbar.ai",
                                 headers=preflight_headers("GET"))
    assert status == 204 and "Authorization" in headers["Access-Control-Allow-Headers"]


async def test_a_disallowed_origin_gets_no_cors_headers(stack: Stack) -> None:
    tenant, other = stack.add_tenant(), stack.add_tenant()
    for origin in ("https://evil.example", f"https://{other.slug}.agentbar.ai", "null",
                   f"https://{tenant.slug}.agentbar.ai.evil.example", f"https://{tenant.slug}.agentbar.ai/x",
                   "https://" + "a" * 400):
        status, headers = await call(stack, "OPTIONS", "/payment/create", tenant, origin,
                                     headers=preflight_headers())
        assert status == 204, origin
        assert not any(name in headers for name in CORS_HEADERS), origin
        assert headers["Vary"] == "Origin"
        status, headers = await call(stack, "GET", "/orders/NOPE/status", tenant, origin)
        assert status == 404 and "Access-Control-Allow-Origin" not in headers and headers["Vary"] == "Origin"


async def test_answers_to_an_allowed_origin_carry_it_errors_included(stack: Stack) -> None:
    tenant = stack.add_tenant()
    origin = f"https://{tenant.slug}.agentbar.ai"
    body = {"orderId": "CORS-1", "amount": 1000, "email": "a@example.com", "phone": "0812", "name": "Budi",
            "paymentMethod": "bca"}
    status, headers = await call(stack, "POST", "/payment/create", tenant, origin, json=body)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == origin and headers["Vary"] == "Origin"
    assert "Access-Control-Allow-Methods" not in headers  # only a preflight says what may be sent
    for method, path, expected in (("GET", "/orders/NOPE/status", 404), ("GET", "/no/such/route", 404),
                                   ("POST", "/payment/create", 400), ("GET", "/admin/stats", 401)):
        status, headers = await call(stack, method, path, tenant, origin, json={})
        assert status == expected, path
        assert headers["Access-Control-Allow-Origin"] == origin, path
        assert headers["Vary"] == "Origin", path
    status, headers = await call(stack, "GET", "/orders/CORS-1/status", tenant)  # no Origin: not a browser's call
    assert status == 200 and "Access-Control-Allow-Origin" not in headers and headers["Vary"] == "Origin"


async def test_a_tenant_allows_more_origins_with_dualstack_tenant_set(stack: Stack) -> None:
    tenant = stack.add_tenant()
    stack.admin.set(tenant.slug, cors_origins=["HTTPS://Shop.Example:443", "http://localhost:5173"])
    for origin in ("https://shop.example", "http://localhost:5173", f"https://{tenant.slug}.agentbar.ai"):
        status, headers = await call(stack, "OPTIONS", "/payment/create", tenant, origin,
                                     headers=preflight_headers())
        assert (status, headers.get("Access-Control-Allow-Origin")) == (204, origin)
    for origin in ("http://shop.example", "http://localhost:5174"):  # scheme and port are part of an origin
        status, headers = await call(stack, "OPTIONS", "/payment/create", tenant, origin,
                                     headers=preflight_headers())
        assert "Access-Control-Allow-Origin" not in headers, origin
    stack.admin.set(tenant.slug, cors_origins=[])
    status, headers = await call(stack, "OPTIONS", "/payment/create", tenant, "https://shop.example",
                                 headers=preflight_headers())
    assert "Access-Control-Allow-Origin" not in headers


async def test_an_options_request_that_is_no_preflight_reaches_the_routes(stack: Stack) -> None:
    tenant = stack.add_tenant()
    status, headers = await call(stack, "OPTIONS", "/payment/create", tenant, f"https://{tenant.slug}.agentbar.ai")
    assert status == 405 and headers["Vary"] == "Origin"


def test_the_own_origins_include_the_routing_files_hosts() -> None:
    rule = TenantRule(base_domain="agentbar.ai", platform_subdomains=DEFAULT_PLATFORM_SUBDOMAINS,
                      trusted_proxies=(), host_aliases={"buatfilm.com": "buatfilm", "www.other.com": "other"})
    tenant = TenantRecord(id=uuid.uuid4(), slug="buatfilm", name="B", status="active", plan="pro",
                          max_orders_per_month=None, server_key=Secret("SB-Mid-server-x"), environment="sandbox",
                          admin_token_sha256=None, email_from=None, email_reply_to=None,
                          cors_origins=("https://pay.example:8443", "not an origin"))
    assert allowed_origins(rule, tenant) == {
        "https://buatfilm.agentbar.ai", "http://buatfilm.agentbar.ai", "https://buatfilm.com", "http://buatfilm.com",
        "https://pay.example:8443"}

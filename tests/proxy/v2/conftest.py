"""A running v2 service (as the application role) and a fake Midtrans, both real servers on loopback."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from controlplane.db.tenants import NewTenant, TenantAdmin
from proxy.v2.app import create_v2_app
from proxy.v2.settings import V2Settings, tenant_rule
from standins.midtrans import FakeMidtrans
from tests.conftest import Database
from tests.proxy.test_forward import free_port


@dataclass
class Tenant:
    slug: str
    server_key: str
    admin_token: str


@dataclass
class Stack:
    v2: TestServer
    midtrans: FakeMidtrans
    midtrans_server: TestServer
    database: Database
    admin: TenantAdmin
    app: web.Application

    @property
    def url(self) -> str:
        return str(self.v2.make_url("")).rstrip("/")

    def add_tenant(self, *, plan: str = "pro", limit: int | None = None, status: str = "active") -> Tenant:
        slug = "v" + secrets.token_hex(4)
        key = "SB-Mid-server-" + secrets.token_hex(8)
        token = self.admin.add(NewTenant(slug, f"Shop {slug}", plan, key, "sandbox", max_orders_per_month=limit))
        if status != "active":
            self.admin.set(slug, status=status)
        self.midtrans.add_key(key)
        return Tenant(slug, key, token)

    async def request(self, method: str, path: str, tenant: Tenant | str | None = None,
                      **kwargs: Any) -> tuple[int, Any]:
        slug = tenant.slug if isinstance(tenant, Tenant) else tenant
        sep = "&" if "?" in path else "?"
        url = f"{self.url}{path}{sep}tenant={slug}" if slug else f"{self.url}{path}"
        async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as response:
            text = await response.text()
            try:
                return response.status, await response.json(content_type=None)
            except ValueError:
                return response.status, text

    async def create(self, tenant: Tenant, order_id: str, amount: int = 150000, **extra: Any) -> tuple[int, Any]:
        body = {"orderId": order_id, "amount": amount, "email": "Buyer@Example.com", "phone": "0812",
                "name": "Budi", "paymentMethod": "bca", **extra}
        return await self.request("POST", "/payment/create", tenant, json=body)

    async def notify(self, order_id: str, **spec: Any) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.post(
            self.midtrans_server.make_url("/_fake/notify"), json={"order_id": order_id, **spec}
        ) as response:
            assert response.status == 200, await response.text()
            return list((await response.json())["deliveries"])


@pytest.fixture
async def stack(aiohttp_server: Any, database: Database) -> Stack:
    midtrans = FakeMidtrans([])
    midtrans_server = await aiohttp_server(midtrans.app())
    port = free_port()
    fake = str(midtrans_server.make_url("")).rstrip("/")
    rule, base_domain = tenant_rule(None, "agentbar.ai")
    settings = V2Settings(
        database_url=database.app_url, rule=rule, base_domain=base_domain, schema=database.layout.schema,
        notification_url_template=f"http://127.0.0.1:{port}/webhooks/midtrans?tenant={{slug}}",
        snap_urls={"sandbox": f"{fake}/sandbox/snap/v1/transactions",
                   "production": f"{fake}/production/snap/v1/transactions"},
        tenant_cache_ttl_s=0.0, pool_max_size=20)
    app = create_v2_app(settings)
    v2 = await aiohttp_server(app, port=port)
    return Stack(v2, midtrans, midtrans_server, database, TenantAdmin(database.admin_url, database.layout), app)

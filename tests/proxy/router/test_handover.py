"""Orders on the other backend: status reads that fall back on 404, notifications delivered to both."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import RouterFactory, routing_yaml, signed


@dataclass
class Backend:
    name: str
    orders: set[str]
    webhook_status: int = 200
    webhook_body: str = "OK"
    hang: bool = False
    reads: list[str] = field(default_factory=list)
    notifications: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)

    def app(self) -> web.Application:
        async def status(request: web.Request) -> web.Response:
            order_id = request.match_info["order_id"]
            self.reads.append(order_id)
            if order_id not in self.orders:
                return web.json_response({"success": False, "error": f"{self.name}: Order not found"}, status=404)
            return web.json_response({"success": True, "order": {"id": order_id, "status": "PAID"},
                                      "from": self.name})

        async def webhook(request: web.Request) -> web.Response:
            self.notifications.append((json.loads(await request.read()), dict(request.headers)))
            if self.hang:
                await asyncio.sleep(30)
            return web.Response(status=self.webhook_status, text=self.webhook_body)

        app = web.Application()
        app.router.add_get("/orders/{order_id}/status", status)
        app.router.add_post("/webhooks/midtrans", webhook)
        return app


@pytest.fixture
async def backends(aiohttp_server: Any) -> dict[str, tuple[Backend, str]]:
    out = {}
    for name, orders in (("v1", {"ON-V1"}), ("v2", {"ON-V2"})):
        backend = Backend(name, orders)
        server = await aiohttp_server(backend.app())
        out[name] = (backend, str(server.make_url("")).rstrip("/"))
    return out


async def _router(make_router: RouterFactory, backends: dict[str, tuple[Backend, str]], tenant: str,
                  timeouts: str = "", v1_tenants: str | None = None) -> Any:
    # Without a list, v1 holds only a tenant the file puts on v1.
    held = ["shop"] if "backend: v1" in tenant else []
    if v1_tenants is not None:
        held = [s.strip() for s in v1_tenants.strip("[]").split(",") if s.strip()]
    yaml = routing_yaml(backends["v1"][1], backends["v2"][1], tenant, timeouts=timeouts, v1_tenants=held)
    return await make_router(yaml)


HOST = {"Host": "shop.agentbar.ai"}
NOTIFICATION = signed({"order_id": "ON-V2", "status_code": "200", "gross_amount": "10000.00",
                       "transaction_status": "settlement", "transaction_id": "t-1"})


async def test_a_status_read_the_serving_backend_does_not_know_is_answered_by_the_other(
    make_router: RouterFactory, backends: dict[str, tuple[Backend, str]]
) -> None:
    router = await _router(make_router, backends, "shop: {backend: v1}\n")
    v2 = backends["v2"][0]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{router.url}/orders/ON-V1/status", headers=HOST) as response:
            assert response.status == 200 and response.headers["X-Dualstack-Backend"] == "v1"
        assert v2.reads == []  # a known order costs nothing more
        async with session.get(f"{router.url}/orders/ON-V2/status", headers=HOST) as response:
            body = await response.json()
            assert response.status == 200 and body["from"] == "v2"
            assert response.headers["X-Dualstack-Backend"] == "v2"
            assert response.headers["X-Request-ID"]
        async with session.get(f"{router.url}/orders/NOWHERE/status", headers=HOST) as response:
            # Neither knows it: the serving backend's own 404 is the answer.
            assert response.status == 404 and (await response.json())["error"] == "v1: Order not found"
        async with session.get(f"{router.url}/orders/NOWHERE/other", headers=HOST) as response:
            assert response.status == 404
    assert v2.reads == ["ON-V2", "NOWHERE"]
    assert router.sample("dualstack_order_fallbacks_total", tenant="shop", result="served") == 1
    assert router.sample("dualstack_order_fallbacks_total", tenant="shop", result="not_found") == 1
    assert router.sample("dualstack_requests_total", tenant="shop", backend="v2", code_class="2xx") == 1


async def test_notifications_reach_both_backends_and_midtrans_gets_the_serving_ones_answer(
    make_router: RouterFactory, backends: dict[str, tuple[Backend, str]]
) -> None:
    router = await _router(make_router, backends, "shop: {backend: v1, shadow: {sample_rate: 1}}\n")
    v1, v2 = backends["v1"][0], backends["v2"][0]
    v2.webhook_status, v2.webhook_body = 200, "v2 says OK"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{router.url}/webhooks/midtrans", json=NOTIFICATION,
                                headers={**HOST, "X-Dualstack-Shadow": "1"}) as response:
            assert (response.status, await response.text()) == (200, "OK")
            assert response.headers["X-Dualstack-Backend"] == "v1"
    assert [n for n, _ in v1.notifications] == [NOTIFICATION] == [n for n, _ in v2.notifications]
    (_, v1_headers), (_, v2_headers) = v1.notifications[0], v2.notifications[0]
    # A real delivery, not a dry run: no shadow marker (a client's is stripped), same request id.
    assert "X-Dualstack-Shadow" not in v2_headers and v2_headers["X-Tenant-Slug"] == "shop"
    assert v1_headers["X-Request-ID"] == v2_headers["X-Request-ID"]
    assert router.sample("dualstack_webhook_copies_total", tenant="shop", backend="v2", result="accepted") == 1
    assert router.sample("dualstack_shadow_skipped_total", tenant="shop", reason="delivered_to_both") == 1


async def test_webhooks_primary_sends_notifications_to_the_serving_backend_only(
    make_router: RouterFactory, backends: dict[str, tuple[Backend, str]]
) -> None:
    router = await _router(make_router, backends, "shop: {backend: v1, webhooks: primary}\n")
    async with aiohttp.ClientSession() as session, session.post(
            f"{router.url}/webhooks/midtrans", json=NOTIFICATION, headers=HOST) as response:
        assert response.status == 200
    assert len(backends["v1"][0].notifications) == 1 and backends["v2"][0].notifications == []


async def test_v2_not_knowing_the_order_yet_takes_v1s_acceptance_and_never_drops_a_notification(
    make_router: RouterFactory, backends: dict[str, tuple[Backend, str]]
) -> None:
    router = await _router(make_router, backends, "shop: {backend: v2}\n", v1_tenants="[shop]")
    v1, v2 = backends["v1"][0], backends["v2"][0]
    v2.webhook_status, v2.webhook_body = 503, json.dumps({"success": False, "error": "order_not_known_yet"})
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{router.url}/webhooks/midtrans", json=NOTIFICATION, headers=HOST) as response:
            # v1 held the order and applied the notification: Midtrans is done.
            assert (response.status, await response.text()) == (200, "OK")
            assert response.headers["X-Dualstack-Backend"] == "v1"
        assert router.sample("dualstack_webhook_copies_total", tenant="shop", backend="v1", result="answered") == 1
        v1.webhook_status = 500
        async with session.post(f"{router.url}/webhooks/midtrans", json=NOTIFICATION, headers=HOST) as response:
            # Nobody applied it: v2's 503 stands, so Midtrans retries.
            assert response.status == 503 and response.headers["X-Dualstack-Backend"] == "v2"
        v2.webhook_status, v2.webhook_body = 503, json.dumps({"success": False, "error": "database_unavailable"})
        v1.webhook_status = 200
        async with session.post(f"{router.url}/webhooks/midtrans", json=NOTIFICATION, headers=HOST) as response:
            # Any other 503 of v2 is its own failure and stays its answer.
            assert response.status == 503
    assert len(v1.notifications) == len(v2.notifications) == 3


async def test_a_hung_or_dead_other_backend_never_changes_the_answer(
    free_port: Callable[[], int], make_router: RouterFactory, backends: dict[str, tuple[Backend, str]]
) -> None:
    v2 = backends["v2"][0]
    v2.hang = True
    router = await _router(make_router, backends, "shop: {backend: v1}\n", timeouts=", read_timeout_s: 0.3")
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{router.url}/webhooks/midtrans", json=NOTIFICATION, headers=HOST) as response:
            assert (response.status, await response.text()) == (200, "OK")
        assert router.sample("dualstack_webhook_copies_total", tenant="shop", backend="v2", result="failed") == 1
    dead = f"http://127.0.0.1:{free_port()}"
    router = await make_router(routing_yaml(backends["v1"][1], dead, "shop: {backend: v1}\n"))
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{router.url}/webhooks/midtrans", json=NOTIFICATION, headers=HOST) as response:
            assert (response.status, await response.text()) == (200, "OK")
        async with session.get(f"{router.url}/orders/NOWHERE/status", headers=HOST) as response:
            assert response.status == 404
    assert router.sample("dualstack_order_fallbacks_total", tenant="shop", result="error") == 1


async def test_v1_is_never_asked_about_a_tenant_whose_orders_it_does_not_hold(
    make_router: RouterFactory, backends: dict[str, tuple[Backend, str]]
) -> None:
    # v1 is single-tenant: its orders belong to the tenants in upstreams.v1.tenants only. Asking it
    # on behalf of another tenant would hand that tenant v1's customers.
    router = await _router(make_router, backends, "shop: {backend: v2}\nother: {backend: v2}\n",
                           v1_tenants="[shop]")
    v1 = backends["v1"][0]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{router.url}/orders/ON-V1/status", headers={"Host": "other.agentbar.ai"}) as response:
            assert response.status == 404 and response.headers["X-Dualstack-Backend"] == "v2"
        async with session.post(f"{router.url}/webhooks/midtrans", json=NOTIFICATION,
                                headers={"Host": "other.agentbar.ai"}) as response:
            assert response.status == 200
        assert v1.reads == [] and v1.notifications == []
        async with session.get(f"{router.url}/orders/ON-V1/status", headers=HOST) as response:
            assert response.status == 200 and response.headers["X-Dualstack-Backend"] == "v1"
    assert v1.reads == ["ON-V1"]


async def test_a_failed_copy_is_counted_and_names_the_order_and_an_order_not_held_is_no_failure(
    make_router: RouterFactory, backends: dict[str, tuple[Backend, str]], caplog: pytest.LogCaptureFixture
) -> None:
    router = await _router(make_router, backends, "shop: {backend: v1}\n")
    v2 = backends["v2"][0]
    v2.webhook_status, v2.webhook_body = 500, "boom"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{router.url}/webhooks/midtrans", json=NOTIFICATION, headers=HOST) as response:
            assert response.status == 200
        v2.webhook_status, v2.webhook_body = 503, json.dumps({"success": False, "error": "order_not_known_yet"})
        async with session.post(f"{router.url}/webhooks/midtrans", json=NOTIFICATION, headers=HOST) as response:
            assert response.status == 200
    assert router.sample("dualstack_webhook_copies_total", tenant="shop", backend="v2", result="failed") == 1
    assert router.sample("dualstack_webhook_copies_total", tenant="shop", backend="v2", result="refused") == 1
    [line] = [r.getMessage() for r in caplog.records if "notification copy" in r.getMessage()]
    assert "tenant shop order ON-V2: notification copy to v2 failed (500" in line
    assert "signature" not in line and "10000.00" not in line  # the order is named, the notification is not

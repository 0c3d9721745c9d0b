"""The whole shadow path: router -> v1 stand-in (primary; its PostgreSQL generation, which has a status
route) and real v2 on PostgreSQL (shadow, dry-run)."""

from __future__ import annotations

import textwrap
from typing import Any

import aiohttp
import psycopg

from proxy.router import keys
from standins.legacy_v1 import KEEPALIVE_TIMEOUT_S, LegacyV1, PostgresOrders
from tests.conftest import RouterFactory, wait_until
from tests.fixtures.v2_stack import Stack


async def test_v1_primary_and_v2_shadow_compare_on_real_traffic(
    stack: Stack, aiohttp_server: Any, make_router: RouterFactory, empty_database: str
) -> None:
    tenant = stack.add_tenant()
    fake = str(stack.midtrans_server.make_url("")).rstrip("/")
    v1 = await aiohttp_server(LegacyV1(PostgresOrders(empty_database), server_key=tenant.server_key,
                                       snap_url=f"{fake}/sandbox/snap/v1/transactions").app(),
                              keepalive_timeout=KEEPALIVE_TIMEOUT_S)
    v1_url = str(v1.make_url("")).rstrip("/")
    router = await make_router(textwrap.dedent(f"""\
        upstreams:
          v1: {{url: "{v1_url}", tenants: [{tenant.slug}]}}
          v2: {{url: "{stack.url}"}}
        base_domain: agentbar.ai
        tenants:
          {tenant.slug}:
            backend: v1
            shadow: {{noise_sample_rate: 0, not_replicated_recheck_s: 0.05}}
        """))
    host = {"Host": f"{tenant.slug}.agentbar.ai"}
    order = {"orderId": "SH-1", "amount": 150000, "email": "budi@example.com", "phone": "0812", "name": "Budi",
             "paymentMethod": "bca"}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{router.url}/payment/create", json=order, headers=host) as response:
            created = await response.json()
        assert response.headers["X-Dualstack-Backend"] == "v1" and created["success"] is True
        async with session.get(f"{router.url}/orders/SH-1/status", headers=host) as response:
            assert (await response.json())["order"]["status"] == "pending"  # v1's spelling
    calls = stack.midtrans.snap_calls
    await wait_until(lambda: router.sample("dualstack_shadow_requests_total", tenant=tenant.slug, result="sent") == 2)
    # The create ran dry on v2: the only Snap call is v1's, and v2 kept no row.
    assert stack.midtrans.snap_calls == calls == 1
    with psycopg.connect(stack.database.admin_url) as conn:
        assert conn.execute("SELECT count(*) FROM payments.orders o JOIN payments.tenants t ON t.id = o.tenant_id "
                            "WHERE t.slug = %s", (tenant.slug,)).fetchone() == (0,)
    # The create matches (tokens and URLs are declared noise; v2's extra fields are compatible).
    assert router.sample("dualstack_shadow_comparisons_total", tenant=tenant.slug, endpoint="POST /payment/create",
                         result="match") == 1
    # The status read differs: v2 does not know an order that exists only in v1, still not when asked
    # again (nothing syncs here), so it is a mismatch rather than not_replicated.
    await wait_until(lambda: router.sample("dualstack_shadow_comparisons_total", tenant=tenant.slug,
                                           endpoint="GET /orders/{id}/status", result="mismatch") == 1)
    assert router.sample("dualstack_shadow_requests_total", tenant=tenant.slug, result="recheck") == 1
    [mismatch] = list(router.app[keys.MIRROR].recent)
    assert mismatch.endpoint == "GET /orders/{id}/status"
    assert [(d.path, d.kind) for d in mismatch.differences][:2] == [("status", "status"), ("$.order", "missing")]

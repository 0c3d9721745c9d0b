"""Dry runs: a mirrored create, status read or webhook runs v2's real code and leaves nothing behind."""

from __future__ import annotations

import ipaddress
from typing import Any

import aiohttp
import psycopg

from controlplane.config.tenant import TenantRule
from proxy.v2.app import create_v2_app
from proxy.v2.settings import V2Settings
from tests.conftest import Database, wait_until
from tests.fixtures.v2_rows import order
from tests.fixtures.v2_stack import MARK, Stack


def counts(stack: Stack, slug: str) -> tuple[int, int, int, int]:
    with psycopg.connect(stack.database.admin_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM payments.orders WHERE tenant_id = t.id), "
            "(SELECT count(*) FROM payments.customers WHERE tenant_id = t.id), "
            "(SELECT count(*) FROM payments.payment_events WHERE tenant_id = t.id), "
            "(SELECT coalesce(sum(orders), 0) FROM payments.usage_counters WHERE tenant_id = t.id) "
            "FROM payments.tenants t WHERE t.slug = %s", (slug,)).fetchone()
    assert row is not None
    return tuple(int(v) for v in row)  # type: ignore[return-value]


async def test_a_dry_run_create_keeps_nothing_and_calls_no_midtrans(stack: Stack) -> None:
    tenant = stack.add_tenant(plan="starter", limit=1)
    calls = stack.midtrans.snap_calls
    status, body = await stack.request(
        "POST", "/payment/create", tenant, headers=MARK,
        json={"orderId": "DRY-1", "amount": 1000, "email": "a@b.co", "phone": "1", "name": "A"})
    assert status == 200 and body["token"].startswith("dryrun-")
    assert stack.midtrans.snap_calls == calls
    assert counts(stack, tenant.slug) == (0, 0, 0, 0)
    # The quota was not consumed: the one real order of this month still fits.
    assert (await stack.create(tenant, "REAL-1"))[0] == 200
    assert counts(stack, tenant.slug) == (1, 1, 0, 1)


async def test_a_dry_run_status_read_answers_from_the_database_and_asks_no_midtrans(stack: Stack) -> None:
    tenant, other = stack.add_tenant(), stack.add_tenant()
    await stack.create(tenant, "DRY-S", amount=5000)  # recent, pending, with a Snap token
    asked = stack.midtrans.status_calls
    status, body = await stack.request("GET", "/orders/DRY-S/status", tenant, headers=MARK)
    assert status == 200 and body["order"]["id"] == "DRY-S" and body["order"]["status"] == "PENDING_PAYMENT"
    assert body["order"]["totalAmount"] == 5000
    assert stack.midtrans.status_calls == asked
    # Bound to its own tenant inside the dry run's transaction too.
    assert (await stack.request("GET", "/orders/DRY-S/status", other, headers=MARK))[0] == 404


async def test_a_dry_run_webhook_changes_nothing(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "DRY-W", amount=5000)
    transaction = stack.midtrans.set_status("DRY-W", "settlement")  # what Get Status will confirm
    payload = stack.midtrans.notification(transaction, "settlement")
    before = counts(stack, tenant.slug)
    status, body = await stack.request("POST", "/webhooks/midtrans", tenant, json=payload, headers=MARK)
    assert (status, body) == (200, "OK")
    assert counts(stack, tenant.slug) == before
    # Read from the database: a real status read would itself ask Midtrans (read_confirm.py).
    assert order(stack, tenant, "DRY-W")[0] == "pending"  # type: ignore[index]
    # The same notification for real is applied (the dry run took no dedupe key).
    assert (await stack.request("POST", "/webhooks/midtrans", tenant, json=payload))[0] == 200
    assert (await stack.request("GET", "/orders/DRY-W/status", tenant))[1]["order"]["status"] == "PAID"


async def test_a_marker_from_an_untrusted_peer_is_refused(aiohttp_server: Any, database: Database) -> None:
    rule = TenantRule(base_domain="agentbar.ai", platform_subdomains=frozenset(),
                      trusted_proxies=(ipaddress.ip_network("10.9.0.0/16"),), host_aliases={})
    app = create_v2_app(V2Settings(database_url=database.app_url, rule=rule, schema=database.layout.schema))
    server = await aiohttp_server(app)
    async with aiohttp.ClientSession() as session, session.post(
        server.make_url("/payment/create?tenant=x"), json={}, headers=MARK
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "untrusted_shadow_marker"


async def test_dry_runs_send_no_email_through_the_real_sender(stack: Stack) -> None:
    tenant = stack.add_tenant()  # its emails go to the stack's real relay
    status, _ = await stack.request(
        "POST", "/payment/create", tenant, headers=MARK,
        json={"orderId": "DRY-MAIL", "amount": 1000, "email": "a@b.co", "phone": "1", "name": "A"})
    assert status == 200
    await stack.create(tenant, "REAL-MAIL", amount=5000)
    # The real order's email went out, and its row says so (the relay has it a moment before that commit).
    await wait_until(lambda: len(stack.relay.to("REAL-MAIL")) == 1 and stack.outbox_rows(tenant)[0][2] == "sent")
    transaction = stack.midtrans.transactions[(tenant.server_key, "REAL-MAIL")]
    payload = stack.midtrans.notification(transaction, "settlement")
    assert (await stack.request("POST", "/webhooks/midtrans", tenant, json=payload, headers=MARK))[0] == 200
    for _ in range(3):
        await stack.sweep(tenant)
    assert stack.relay.to("DRY-MAIL") == [] and len(stack.relay.to("REAL-MAIL")) == 1  # no payment email
    assert [row[:3] for row in stack.outbox_rows(tenant)] == [("REAL-MAIL", "order_created", "sent")]

"""POST /payment/create against real PostgreSQL (as the app role) and the fake Midtrans."""

from __future__ import annotations

import asyncio

import psycopg

from tests.fixtures.v2_stack import Stack


async def test_create_commits_the_order_then_calls_snap_with_the_tenants_key(stack: Stack) -> None:
    tenant = stack.add_tenant()
    status, body = await stack.create(tenant, "ORDER-101", paymentMethod="bca")
    assert status == 200
    assert body["success"] is True and body["token"]
    assert body["paymentUrl"] == body["redirectUrl"] and body["orderId"] == "ORDER-101"
    transaction = stack.midtrans.transactions[(tenant.server_key, "ORDER-101")]
    assert transaction.gross_amount == 150000 and transaction.token == body["token"]
    assert transaction.notification_urls == [f"{stack.url}/webhooks/midtrans?tenant={tenant.slug}"]
    with psycopg.connect(stack.database.admin_url) as conn:
        row = conn.execute("SELECT o.payment_status, o.snap_token, o.email, c.email FROM payments.orders o "
                           "JOIN payments.customers c ON c.tenant_id = o.tenant_id AND c.id = o.customer_id "
                           "JOIN payments.tenants t ON t.id = o.tenant_id WHERE t.slug = %s", (tenant.slug,)).fetchone()
    assert row == ("pending", body["token"], "Buyer@Example.com", "buyer@example.com")


async def test_a_repeat_returns_the_stored_token_without_calling_snap(stack: Stack) -> None:
    tenant = stack.add_tenant()
    first = await stack.create(tenant, "ORDER-REPEAT")
    calls = stack.midtrans.snap_calls
    again = await stack.create(tenant, "ORDER-REPEAT")
    assert again == first and stack.midtrans.snap_calls == calls
    status, body = await stack.create(tenant, "ORDER-REPEAT", amount=999)
    assert (status, body["error"]) == (409, "order_id_conflict")


async def test_concurrent_repeats_create_one_order(stack: Stack) -> None:
    tenant = stack.add_tenant()
    results = await asyncio.gather(*(stack.create(tenant, "ORDER-RACE") for _ in range(8)))
    assert {status for status, _ in results} == {200}
    assert len({body["token"] for _, body in results}) == 1
    assert len([t for t in stack.midtrans.transactions if t[1] == "ORDER-RACE"]) == 1


async def test_50_concurrent_creates_against_a_limit_of_10_make_exactly_10_orders(stack: Stack) -> None:
    tenant = stack.add_tenant(plan="starter", limit=10)
    results = await asyncio.gather(*(stack.create(tenant, f"Q-{i}") for i in range(50)))
    statuses = [status for status, _ in results]
    assert statuses.count(200) == 10 and statuses.count(429) == 40
    refused = next(body for status, body in results if status == 429)
    assert refused["error"] == "monthly_order_limit_reached"
    with psycopg.connect(stack.database.admin_url) as conn:
        count = conn.execute("SELECT count(*) FROM payments.orders o JOIN payments.tenants t ON t.id = o.tenant_id "
                             "WHERE t.slug = %s", (tenant.slug,)).fetchone()
        used = conn.execute("SELECT u.orders FROM payments.usage_counters u JOIN payments.tenants t "
                            "ON t.id = u.tenant_id WHERE t.slug = %s", (tenant.slug,)).fetchone()
    assert count == (10,) and used == (10,)


async def test_v1_compatible_validation_errors(stack: Stack) -> None:
    tenant = stack.add_tenant()
    status, body = await stack.request("POST", "/payment/create", tenant,
                                       json={"orderId": "", "amount": -5, "email": "nope", "phone": "", "name": ""})
    assert status == 400
    assert body == {"error": "Validation Error", "message": "Invalid input data", "details": [
        "Order ID is required", "Valid amount is required", "Valid email is required",
        "Phone number is required", "Name is required"]}
    status, body = await stack.request("POST", "/payment/create", tenant, data=b"{not json",
                                       headers={"Content-Type": "application/json"})
    assert (status, body["details"]) == (400, ["Request body must be valid JSON"])
    assert stack.midtrans.snap_calls == 0


async def test_suspended_tenants_take_no_orders(stack: Stack) -> None:
    tenant = stack.add_tenant(status="suspended")
    status, body = await stack.create(tenant, "ORDER-S")
    assert (status, body["error"]) == (403, "tenant_not_active")


async def test_midtrans_errors_become_clear_json(stack: Stack) -> None:
    tenant = stack.add_tenant()
    stack.midtrans.server_keys.discard(tenant.server_key)  # Midtrans does not know this key
    status, body = await stack.create(tenant, "ORDER-401")
    assert (status, body["error"]) == (502, "payment_gateway_credentials")
    assert tenant.server_key not in str(body)
    stack.midtrans.add_key(tenant.server_key)
    stack.midtrans._failures.extend(["500"] * 3)  # more than the retries
    status, body = await stack.create(tenant, "ORDER-5XX")
    assert (status, body["error"]) == (503, "payment_gateway_unavailable")
    # The order stayed pending without a token; a later repeat retries Snap and succeeds.
    status, body = await stack.create(tenant, "ORDER-5XX")
    assert status == 200 and body["token"]


async def test_a_transient_midtrans_failure_is_retried(stack: Stack) -> None:
    tenant = stack.add_tenant()
    stack.midtrans._failures.append("500")
    status, _ = await stack.create(tenant, "ORDER-RETRY")
    assert status == 200 and stack.midtrans.snap_calls == 2


async def test_an_order_id_midtrans_already_has_is_a_409(stack: Stack) -> None:
    tenant = stack.add_tenant()
    other = stack.add_tenant()
    stack.midtrans.add_key(tenant.server_key)
    await stack.create(tenant, "TAKEN-1")
    # The same order id again under the same merchant key, through another tenant row sharing the key.
    stack.admin.set(other.slug, midtrans_server_key=tenant.server_key)
    status, body = await stack.create(other, "TAKEN-1")
    assert (status, body["error"]) == (409, "order_id_taken")


async def test_unknown_tenants_are_404(stack: Stack) -> None:
    status, body = await stack.request("POST", "/payment/create", "nobody", json={})
    assert (status, body["error"]) == (404, "unknown_tenant")

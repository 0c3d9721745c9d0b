"""v2's /admin/reconcile on the real stack: candidates, Midtrans' word applied by the webhook's rules
(recorded `reconciled`, the email queued once), nothing applied while Get Status is down."""

from __future__ import annotations

from typing import Any

from tests.fixtures.v2_rows import age, emails, order, recorded
from tests.fixtures.v2_stack import Stack, Tenant


async def admin(stack: Stack, tenant: Tenant, method: str, path: str, token: str | None = None) -> tuple[int, Any]:
    return await stack.request(method, path, tenant,
                               headers={"Authorization": f"Bearer {token or tenant.admin_token}"})


async def test_candidates_are_old_pending_orders_and_unconfirmed_notifications(stack: Stack) -> None:
    tenant = stack.add_tenant()
    for order_id in ("R-OLD", "R-NEW", "R-UNCONFIRMED", "R-ANCIENT"):
        await stack.create(tenant, order_id, amount=5000)
    age(stack, tenant, "R-OLD", 60)
    age(stack, tenant, "R-ANCIENT", 60 * 24 * 30)  # outside the window: abandoned long ago
    stack.midtrans.fail_next("status", "500")  # the settlement of R-UNCONFIRMED cannot be confirmed
    assert (await stack.notify("R-UNCONFIRMED", transaction_status="settlement"))[0]["status"] == 503
    status, body = await admin(stack, tenant, "GET", "/admin/reconcile?olderThan=900")
    assert status == 200 and body["pendingPastThreshold"] == 1
    assert [(o["orderId"], o["reason"]) for o in body["orders"]] == [("R-OLD", "pending"),
                                                                      ("R-UNCONFIRMED", "unconfirmed")]
    assert (await admin(stack, tenant, "GET", "/admin/reconcile", token="wrong"))[0] == 401
    assert (await admin(stack, tenant, "GET", "/admin/reconcile?limit=0"))[0] == 400
    other = stack.add_tenant()  # another tenant's token opens nothing here
    assert (await admin(stack, tenant, "GET", "/admin/reconcile", token=other.admin_token))[0] == 401


async def test_a_lost_notification_is_settled_once_by_the_webhooks_rules(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "R-LOST", amount=5000)
    stack.midtrans.set_status("R-LOST", "settlement", server_key=tenant.server_key)  # paid; notification lost
    status, body = await admin(stack, tenant, "POST", "/admin/reconcile/R-LOST")
    assert status == 200 and (body["result"], body["from"], body["to"]) == ("applied", "pending", "paid")
    assert order(stack, tenant, "R-LOST")[0] == "paid" and emails(stack, tenant, "R-LOST") == 1
    event = recorded(stack, tenant)[-1]
    assert (event["outcome"], event["holds_key"], event["confirmation"]["transaction_status"]) == (
        "reconciled", False, "settlement")
    again = await admin(stack, tenant, "POST", "/admin/reconcile/R-LOST")
    assert again[1]["result"] == "no_change" and emails(stack, tenant, "R-LOST") == 1
    # The notification Midtrans retries later changes nothing either.
    assert (await stack.notify("R-LOST", transaction_status="settlement"))[0]["status"] == 200
    assert order(stack, tenant, "R-LOST")[0] == "paid" and emails(stack, tenant, "R-LOST") == 1


async def test_get_status_down_applies_nothing_and_precedence_and_amount_hold(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "R-DOWN", amount=5000)
    stack.midtrans.set_status("R-DOWN", "settlement", server_key=tenant.server_key)
    stack.midtrans.fail_next("status", "500")
    status, body = await admin(stack, tenant, "POST", "/admin/reconcile/R-DOWN")
    assert (status, body["result"]) == (503, "unavailable")
    assert order(stack, tenant, "R-DOWN")[0] == "pending" and recorded(stack, tenant) == []

    await stack.create(tenant, "R-AMOUNT", amount=5000)
    stack.midtrans.set_status("R-AMOUNT", "settlement", server_key=tenant.server_key)
    stack.midtrans.transactions[(tenant.server_key, "R-AMOUNT")].gross_amount = 50
    assert (await admin(stack, tenant, "POST", "/admin/reconcile/R-AMOUNT"))[1]["result"] == "amount_mismatch"
    assert order(stack, tenant, "R-AMOUNT")[0] == "pending"

    await stack.create(tenant, "R-UNPAID", amount=5000)  # Midtrans: still pending; nothing recorded
    assert (await admin(stack, tenant, "POST", "/admin/reconcile/R-UNPAID"))[1]["result"] == "no_change"
    assert [e["order_id"] for e in recorded(stack, tenant)] == ["R-AMOUNT"]
    status, body = await admin(stack, tenant, "POST", "/admin/reconcile/R-NONE")
    assert status == 404


async def test_midtrans_view_applies_nothing(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "R-VIEW", amount=5000)
    stack.midtrans.set_status("R-VIEW", "settlement", server_key=tenant.server_key)
    status, body = await admin(stack, tenant, "GET", "/admin/reconcile/R-VIEW")
    assert status == 200 and (body["v2"], body["status"], body["midtrans"]["transactionStatus"]) == (
        "pending", "paid", "settlement")
    assert order(stack, tenant, "R-VIEW")[0] == "pending"
    status, body = await admin(stack, tenant, "GET", "/admin/reconcile/R-ONLY-V1")
    assert (status, body["v2"], body["midtrans"]) == (200, None, None)

"""A status read that knows the buyer paid: a recent pending order is checked with Midtrans (Get
Status) before the answer, through the webhook's own apply path, bounded and rationed."""

from __future__ import annotations

import psycopg

from tests.fixtures.v2_rows import order, recorded
from tests.fixtures.v2_stack import MARK, Stack, Tenant


async def read(stack: Stack, tenant: Tenant, order_id: str, **kwargs: object) -> str:
    status, body = await stack.request("GET", f"/orders/{order_id}/status", tenant, **kwargs)
    assert status == 200, body
    return str(body["order"]["status"])


def confirmations(stack: Stack, tenant: Tenant, result: str) -> float:
    return stack.sample("dualstack_v2_status_read_confirmations_total", tenant=tenant.slug, result=result)


async def test_a_just_paid_order_reads_paid_before_the_notification_arrives(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "R-PAID", amount=5000)
    stack.midtrans.set_status("R-PAID", "settlement")  # paid at Midtrans; its notification not sent yet
    assert await read(stack, tenant, "R-PAID") == "PAID"
    assert order(stack, tenant, "R-PAID") == ("paid", False, 1, 5000)  # the customer's totals too
    [event] = recorded(stack, tenant)
    assert (event["status"], event["outcome"], event["holds_key"]) == ("settlement", "confirmed_on_read", False)
    assert event["confirmation"]["transaction_status"] == "settlement"
    assert ("R-PAID", "payment_confirmation") in [r[:2] for r in stack.outbox_rows(tenant)]  # the same email
    assert confirmations(stack, tenant, "applied") == 1
    # The notification arrives afterwards: answered 200, nothing applied twice, one payment email.
    assert (await stack.notify("R-PAID", transaction_status="settlement"))[0]["status"] == 200
    assert order(stack, tenant, "R-PAID") == ("paid", False, 1, 5000)
    assert recorded(stack, tenant)[-1]["outcome"] == "no_change"
    assert [r[1] for r in stack.outbox_rows(tenant)].count("payment_confirmation") == 1


async def test_with_get_status_hanging_the_read_answers_pending_within_its_bound(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "R-HANG", amount=5000)
    stack.midtrans.set_status("R-HANG", "settlement")
    stack.midtrans.fail_next("status", "hang")  # held until the fake shuts down
    assert await read(stack, tenant, "R-HANG") == "PENDING_PAYMENT"
    assert confirmations(stack, tenant, "timeout") == 1
    assert order(stack, tenant, "R-HANG")[0] == "pending"  # type: ignore[index]
    assert recorded(stack, tenant) == []


async def test_a_second_read_within_the_interval_does_not_ask_midtrans_again(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "R-TWICE", amount=5000)
    calls = stack.midtrans.status_calls
    assert await read(stack, tenant, "R-TWICE") == "PENDING_PAYMENT"  # asked: still pending at Midtrans
    assert stack.midtrans.status_calls == calls + 1
    assert recorded(stack, tenant) == []  # a read that changes nothing records nothing
    stack.midtrans.set_status("R-TWICE", "settlement")
    assert await read(stack, tenant, "R-TWICE") == "PENDING_PAYMENT"  # within the interval: not asked
    assert stack.midtrans.status_calls == calls + 1
    assert (confirmations(stack, tenant, "unchanged"), confirmations(stack, tenant, "rationed")) == (1, 1)


async def test_old_paid_unpaid_and_dry_run_reads_do_not_ask_midtrans(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "R-OLD", amount=5000)
    await stack.create(tenant, "R-DRY", amount=5000)
    await stack.create(tenant, "R-DONE", amount=5000)
    await stack.notify("R-DONE", transaction_status="settlement")
    with psycopg.connect(stack.database.admin_url) as conn:
        conn.execute("UPDATE payments.orders SET created_at = now() - interval '2 hours' WHERE order_id = 'R-OLD'")
    for order_id in ("R-OLD", "R-DRY"):
        stack.midtrans.set_status(order_id, "settlement")
    calls = stack.midtrans.status_calls
    assert await read(stack, tenant, "R-OLD") == "PENDING_PAYMENT"  # left to notifications
    assert await read(stack, tenant, "R-DRY", headers=MARK) == "PENDING_PAYMENT"  # a mirrored read
    assert await read(stack, tenant, "R-DONE") == "PAID"
    assert stack.midtrans.status_calls == calls
    assert order(stack, tenant, "R-DRY")[0] == "pending"  # type: ignore[index]
    # A real read of the same order does ask, and applies.
    assert await read(stack, tenant, "R-DRY") == "PAID"

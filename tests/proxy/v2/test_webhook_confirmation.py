"""A signed notification is only a claim: its status code must agree with its status, money moves
on Midtrans' own answer (Get Status), and only what was applied holds the deduplication key."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from proxy.v2.server import parse_args
from tests.fixtures.v2_rows import order, recorded
from tests.fixtures.v2_stack import Stack, Tenant


async def post(stack: Stack, tenant: Tenant, payload: dict[str, Any]) -> tuple[int, Any]:
    return await stack.request("POST", "/webhooks/midtrans", tenant, json=payload)


async def test_a_stolen_pending_notification_with_its_status_changed_is_not_applied(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "C-STOLEN", amount=5000)
    transaction = stack.midtrans.transactions[(tenant.server_key, "C-STOLEN")]
    stolen = stack.midtrans.notification(transaction, "pending")  # genuine, signed, status code 201
    calls = stack.midtrans.status_calls
    status, body = await post(stack, tenant, {**stolen, "transaction_status": "settlement"})
    assert (status, body["error"]) == (403, "status code does not match transaction status")
    assert order(stack, tenant, "C-STOLEN")[0] == "pending"
    assert [(e["outcome"], e["holds_key"]) for e in recorded(stack, tenant)] == [("inconsistent_status", False)]
    assert stack.midtrans.status_calls == calls  # rejected on its own evidence, before asking Midtrans
    # The buyer really pays: the genuine settlement applies.
    assert (await stack.notify("C-STOLEN", transaction_status="settlement"))[0]["status"] == 200
    assert order(stack, tenant, "C-STOLEN")[0] == "paid"


async def test_a_settlement_re_sent_as_deny_does_not_fail_a_paid_order(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "C-DENY", amount=5000)
    await stack.notify("C-DENY", transaction_status="settlement")
    transaction = stack.midtrans.transactions[(tenant.server_key, "C-DENY")]
    settlement = stack.midtrans.notification(transaction, "settlement")
    status, _ = await post(stack, tenant, {**settlement, "transaction_status": "deny"})
    assert status == 403
    assert order(stack, tenant, "C-DENY")[:2] == ("paid", False)
    assert recorded(stack, tenant)[-1]["outcome"] == "inconsistent_status"


async def test_money_moves_on_midtrans_answer_not_the_notification(stack: Stack) -> None:
    """Settlement and refund share status code 200: only Get Status tells the re-sent one apart."""
    tenant = stack.add_tenant()
    await stack.create(tenant, "C-REFUND", amount=5000)
    await stack.notify("C-REFUND", transaction_status="settlement")
    transaction = stack.midtrans.transactions[(tenant.server_key, "C-REFUND")]
    altered = {**stack.midtrans.notification(transaction, "settlement"), "transaction_status": "refund"}
    assert (await post(stack, tenant, altered))[0] == 200
    assert order(stack, tenant, "C-REFUND")[0] == "paid"
    last = recorded(stack, tenant)[-1]
    assert (last["status"], last["outcome"], last["holds_key"]) == ("refund", "no_change", False)
    assert last["confirmation"]["transaction_status"] == "settlement"  # what Midtrans said
    # The real refund later carries exactly the altered one's fields: it was not swallowed.
    assert (await stack.notify("C-REFUND", transaction_status="refund"))[0]["status"] == 200
    assert order(stack, tenant, "C-REFUND")[0] == "refunded"
    assert [(e["outcome"], e["holds_key"]) for e in recorded(stack, tenant)][-1] == ("applied", True)


async def test_a_signed_settlement_midtrans_does_not_confirm_is_not_applied(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "C-UNPAID", amount=5000)
    transaction = stack.midtrans.transactions[(tenant.server_key, "C-UNPAID")]  # still pending at Midtrans
    assert (await post(stack, tenant, stack.midtrans.notification(transaction, "settlement")))[0] == 200
    assert order(stack, tenant, "C-UNPAID")[0] == "pending"
    assert recorded(stack, tenant)[-1]["confirmation"]["transaction_status"] == "pending"


async def test_midtrans_own_amount_is_checked_too(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "C-AMT", amount=5000)
    stack.midtrans.transactions[(tenant.server_key, "C-AMT")].gross_amount = 50  # Midtrans holds another amount
    await stack.notify("C-AMT", transaction_status="settlement", gross_amount="5000.00")
    assert order(stack, tenant, "C-AMT")[0] == "pending"
    last = recorded(stack, tenant)[-1]
    assert (last["outcome"], last["holds_key"], last["confirmation"]["gross_amount"]) == \
        ("amount_mismatch", False, "50.00")


async def test_a_wrong_amount_notification_does_not_swallow_the_genuine_one(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "C-SWALLOW", amount=5000)
    assert (await stack.notify("C-SWALLOW", transaction_status="settlement", gross_amount="5.00"))[0]["status"] == 200
    assert order(stack, tenant, "C-SWALLOW")[0] == "pending"
    assert (await stack.notify("C-SWALLOW", transaction_status="settlement"))[0]["status"] == 200
    assert order(stack, tenant, "C-SWALLOW")[0] == "paid"
    assert [(e["outcome"], e["holds_key"]) for e in recorded(stack, tenant)] == [
        ("amount_mismatch", False), ("applied", True)]


async def test_get_status_down_applies_nothing_and_midtrans_retries(stack: Stack) -> None:
    tenant = stack.add_tenant()
    for order_id, mode in (("C-DOWN-500", "500"), ("C-DOWN-HANG", "hang")):
        await stack.create(tenant, order_id, amount=5000)
        stack.midtrans.fail_next("status", mode)
        # Answered within the bound: the fake's own delivery gives up after 15 s (Midtrans' wait).
        [delivery] = await stack.notify(order_id, transaction_status="settlement")
        assert (delivery["status"], json.loads(delivery["body"])["error"]) == (503, "confirmation_unavailable")
        assert order(stack, tenant, order_id)[0] == "pending"
        last = recorded(stack, tenant)[-1]
        assert (last["order_id"], last["outcome"], last["holds_key"]) == (order_id, "unconfirmed", False)
        # Midtrans' retry of the same notification, with Get Status back, applies.
        assert (await stack.notify(order_id, transaction_status="settlement"))[0]["status"] == 200
        assert order(stack, tenant, order_id)[0] == "paid"


async def test_an_unverified_body_is_kept_only_as_a_bounded_prefix(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "C-BIG", amount=5000)
    transaction = stack.midtrans.transactions[(tenant.server_key, "C-BIG")]
    forged = {**stack.midtrans.notification(transaction, "settlement", forge=True),
              "transaction_id": "t" * 5000, "padding": "x" * 100_000}
    raw = json.dumps(forged).encode()
    status, _ = await stack.request("POST", "/webhooks/midtrans", tenant, data=raw,
                                    headers={"Content-Type": "application/json"})
    assert status == 403
    [event] = recorded(stack, tenant)
    assert event["outcome"] == "forged" and event["order_id"] == "C-BIG"
    assert event["payload"] == {"body_prefix": raw[:2048].decode(), "body_bytes": len(raw)}
    with psycopg.connect(stack.database.admin_url) as conn:
        assert conn.execute("SELECT length(transaction_id) FROM payments.payment_events WHERE order_id = 'C-BIG'"
                            ).fetchone() == (100,)


def test_the_core_api_base_is_configured_per_environment() -> None:
    options = parse_args(["--database-url", "postgresql://x", "--core-url-sandbox", "http://127.0.0.1:9/sandbox",
                          "--core-url-production", "http://127.0.0.1:9/production"], "v2")
    assert options.core_urls == {"sandbox": "http://127.0.0.1:9/sandbox", "production": "http://127.0.0.1:9/production"}
    assert parse_args(["--database-url", "postgresql://x"], "v2").core_urls == {}  # Midtrans' own

"""POST /webhooks/midtrans: signed notifications delivered by the fake Midtrans to a real v2."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from tests.conftest import wait_until
from tests.fixtures.v2_rows import order
from tests.fixtures.v2_stack import Stack, Tenant


def events(stack: Stack, tenant: Tenant) -> list[tuple[Any, ...]]:
    with psycopg.connect(stack.database.admin_url) as conn:
        return conn.execute(
            "SELECT e.order_id, e.transaction_status, e.signature_valid, e.outcome FROM payments.payment_events e "
            "JOIN payments.tenants t ON t.id = e.tenant_id WHERE t.slug = %s ORDER BY e.id", (tenant.slug,)).fetchall()



def outbox(stack: Stack, tenant: Tenant) -> list[tuple[Any, ...]]:
    with psycopg.connect(stack.database.admin_url) as conn:
        return conn.execute(
            "SELECT x.order_id, x.template, x.status FROM payments.notification_outbox x "
            "JOIN payments.tenants t ON t.id = x.tenant_id WHERE t.slug = %s", (tenant.slug,)).fetchall()


async def test_settlement_marks_paid_updates_the_customer_and_sends_one_email(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "W-1", amount=250000)
    deliveries = await stack.notify("W-1", transaction_status="settlement")
    assert [(d["status"], d["body"]) for d in deliveries] == [(200, "OK")]
    assert order(stack, tenant, "W-1") == ("paid", False, 1, 250000)
    await wait_until(lambda: sorted(outbox(stack, tenant)) == [("W-1", "order_created", "sent"),
                                                                 ("W-1", "payment_confirmation", "sent")])
    assert [str(m["Subject"]).strip() for m in stack.relay.to("W-1")] == [
        f"Pesanan W-1 di Shop {tenant.slug}: selesaikan pembayaran Rp250.000",
        f"Pembayaran diterima: pesanan W-1 di Shop {tenant.slug}"]
    status, body = await stack.request("GET", "/orders/W-1/status", tenant)
    assert (status, body["order"]["status"]) == (200, "PAID")


async def test_duplicates_are_recorded_and_applied_once(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "W-DUP", amount=1000)
    deliveries = await stack.notify("W-DUP", transaction_status="settlement", repeat=3)
    assert [d["status"] for d in deliveries] == [200, 200, 200]
    assert order(stack, tenant, "W-DUP") == ("paid", False, 1, 1000)  # counted once
    assert [e[3] for e in events(stack, tenant)] == ["applied", "duplicate", "duplicate"]
    assert [row[1] for row in outbox(stack, tenant)].count("payment_confirmation") == 1


async def test_concurrent_duplicates_apply_once(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "W-CDUP", amount=1000)
    await asyncio.gather(*(stack.notify("W-CDUP", transaction_status="settlement") for _ in range(6)))
    assert order(stack, tenant, "W-CDUP") == ("paid", False, 1, 1000)
    outcomes = [e[3] for e in events(stack, tenant)]
    assert outcomes.count("applied") == 1


async def test_out_of_order_delivery_never_moves_paid_backwards(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "W-OOO", amount=5000)
    await stack.notify("W-OOO", sequence=["settlement", "pending", "expire"])
    assert order(stack, tenant, "W-OOO")[0] == "paid"
    assert [e[3] for e in events(stack, tenant)] == ["applied", "ignored_precedence", "ignored_precedence"]
    await stack.notify("W-OOO", transaction_status="refund")
    assert order(stack, tenant, "W-OOO")[0] == "refunded"


async def test_expired_then_paid_is_applied_and_deny_after_paid_is_flagged(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "W-EXP", amount=5000)
    await stack.notify("W-EXP", sequence=["pending", "expire", "settlement"])
    assert order(stack, tenant, "W-EXP")[:2] == ("paid", False)
    await stack.notify("W-EXP", transaction_status="deny")
    assert order(stack, tenant, "W-EXP")[:2] == ("failed", True)


async def test_capture_with_challenge_stays_pending(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "W-CAP", amount=5000)
    await stack.notify("W-CAP", transaction_status="capture", fraud_status="challenge")
    assert order(stack, tenant, "W-CAP")[0] == "pending"
    await stack.notify("W-CAP", transaction_status="capture", fraud_status="accept")
    assert order(stack, tenant, "W-CAP")[0] == "paid"


async def test_forged_notifications_are_rejected_and_recorded(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "W-FORGED", amount=5000)
    deliveries = await stack.notify("W-FORGED", transaction_status="settlement", forge=True)
    assert deliveries[0]["status"] == 403
    assert order(stack, tenant, "W-FORGED")[0] == "pending"
    assert events(stack, tenant) == [("W-FORGED", "settlement", False, "forged")]


async def test_another_tenants_key_does_not_verify(stack: Stack) -> None:
    """A notification signed with tenant A's key, sent to tenant B's URL, is forged for B."""
    a, b = stack.add_tenant(), stack.add_tenant()
    await stack.create(a, "W-CROSS", amount=5000)
    await stack.create(b, "W-CROSS", amount=5000)
    url = f"{stack.url}/webhooks/midtrans?tenant={b.slug}"
    deliveries = await stack.notify("W-CROSS", server_key=a.server_key, url=url, transaction_status="settlement")
    assert deliveries[0]["status"] == 403
    assert order(stack, b, "W-CROSS")[0] == "pending" and order(stack, a, "W-CROSS")[0] == "pending"


async def test_a_wrong_amount_is_recorded_not_applied(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "W-AMT", amount=5000)
    deliveries = await stack.notify("W-AMT", transaction_status="settlement", gross_amount="5.00")
    assert deliveries[0]["status"] == 200
    assert order(stack, tenant, "W-AMT")[0] == "pending"
    assert events(stack, tenant)[-1][3] == "amount_mismatch"


async def test_unknown_orders_are_answered_and_recorded(stack: Stack) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "W-GONE", amount=5000)
    with psycopg.connect(stack.database.admin_url) as conn:  # as if the order were never in v2
        conn.execute("DELETE FROM payments.orders WHERE order_id = 'W-GONE' AND tenant_id = "
                     "(SELECT id FROM payments.tenants WHERE slug = %s)", (tenant.slug,))
    deliveries = await stack.notify("W-GONE", transaction_status="settlement")
    assert deliveries[0] == {**deliveries[0], "status": 200, "body": "OK"}
    assert events(stack, tenant)[-1][3] == "unknown_order"


async def test_suspended_and_over_quota_tenants_still_settle(stack: Stack) -> None:
    tenant = stack.add_tenant(plan="starter", limit=1)
    await stack.create(tenant, "W-Q1", amount=5000)
    assert (await stack.create(tenant, "W-Q2", amount=5000))[0] == 429  # over quota now
    stack.admin.set(tenant.slug, status="suspended")
    deliveries = await stack.notify("W-Q1", transaction_status="settlement")
    assert deliveries[0]["status"] == 200
    assert order(stack, tenant, "W-Q1")[0] == "paid"


async def test_malformed_bodies_are_400_and_recorded(stack: Stack) -> None:
    tenant = stack.add_tenant()
    status, _ = await stack.request("POST", "/webhooks/midtrans", tenant, data=b"not json",
                                    headers={"Content-Type": "application/json"})
    assert status == 400
    assert events(stack, tenant)[-1][2:] == (False, "malformed")


async def test_a_webhook_for_an_unknown_tenant_is_404(stack: Stack) -> None:
    status, body = await stack.request("POST", "/webhooks/midtrans", "nobody", json={"order_id": "x"})
    assert (status, body["error"]) == (404, "unknown_tenant")


async def test_during_a_grace_window_unknown_orders_are_retried_not_dropped(stack: Stack) -> None:
    from controlplane.cli import ExitStatus, run

    tenant = stack.add_tenant()
    await stack.create(tenant, "W-LATE", amount=5000)
    transaction = stack.midtrans.set_status("W-LATE", "settlement")  # what Get Status will confirm
    with psycopg.connect(stack.database.admin_url) as conn:  # as if the order were still only on v1
        conn.execute("DELETE FROM payments.orders WHERE order_id = 'W-LATE' AND tenant_id = "
                     "(SELECT id FROM payments.tenants WHERE slug = %s)", (tenant.slug,))
    assert run(["tenant", "set", tenant.slug, "--grace-minutes", "10", "--admin-url", stack.database.admin_url,
                "--owner-role", stack.database.layout.owner_role]) == ExitStatus.OK
    payload = stack.midtrans.notification(transaction, "settlement")
    status, body = await stack.request("POST", "/webhooks/midtrans", tenant, json=payload)
    assert (status, body["error"]) == (503, "order_not_known_yet")  # Midtrans will retry
    assert events(stack, tenant)[-1][3] == "unknown_order_retry"
    await stack.create(tenant, "W-LATE", amount=5000)  # the migration catches up
    status, _ = await stack.request("POST", "/webhooks/midtrans", tenant, json=payload)  # Midtrans' retry
    assert status == 200 and order(stack, tenant, "W-LATE")[0] == "paid"  # applied, not lost

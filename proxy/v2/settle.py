"""Midtrans' word applied to an order: one path for a notification and for a status read.

`apply_report()` decides the transition from the order's status and the report (status.py's
rules), checks the amount before any change, records the event in payment_events, makes the
change, and on paid counts the customer's order and queues the confirmation email, all in the
caller's transaction. The webhook (webhooks.py) and the status read that asks Get Status
(read_confirm.py) both call it; the caller wakes the outbox after commit. A status an admin sets
on the admin page (`apply_manual()`) is recorded with the admin as actor and made by the same step.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from controlplane.midtrans_answer import TransactionReport
from controlplane.order_status import OrderStatus
from proxy.v2.db import TenantRecord
from proxy.v2.email_templates import PAYMENT_CONFIRMATION
from proxy.v2.outbox import queue_email
from proxy.v2.status import Transition, decide_transition

log = logging.getLogger(__name__)

Conn = psycopg.AsyncConnection[DictRow]

RECORDED_FIELDS: Final = ("order_id", "transaction_id", "transaction_status", "fraud_status", "status_code",
                          "gross_amount")


def field_text(value: object, limit: int | None) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "\ufffd")  # PostgreSQL text holds no NUL
    return value if limit is None else value[:limit]


async def record_event(conn: Conn, tenant: TenantRecord, payload: dict[str, Any], *, outcome: str,
                       dedupe_key: str | None = None, confirmation: dict[str, Any] | None = None) -> bool:
    """Record a verified report; False when its dedupe key was already taken (a duplicate)."""
    stored = {k: v for k, v in payload.items() if k != "signature_key"}
    values = [field_text(payload.get(k), None) for k in RECORDED_FIELDS]
    cursor = await conn.execute(
        "INSERT INTO payment_events (tenant_id, order_id, transaction_id, transaction_status, fraud_status, "
        "status_code, gross_amount, signature_valid, outcome, dedupe_key, payload, confirmation) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, true, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (tenant.id, *values, outcome, dedupe_key, Jsonb(stored),
         None if confirmation is None else Jsonb(confirmation)))
    return cursor.rowcount == 1


async def lock_order(conn: Conn, order_id: str) -> DictRow | None:
    cursor = await conn.execute(
        "SELECT payment_status, gross_amount FROM orders WHERE order_id = %s FOR UPDATE", (order_id,))
    return await cursor.fetchone()


def amount_matches(received: str, expected: int) -> bool:
    try:
        return Decimal(received) == Decimal(expected)
    except InvalidOperation:
        return False


async def reject_amount(conn: Conn, tenant: TenantRecord, payload: dict[str, Any], order: DictRow,
                        report: TransactionReport, confirmation: dict[str, Any] | None = None) -> None:
    await record_event(conn, tenant, payload, outcome="amount_mismatch", confirmation=confirmation)
    log.warning("tenant %s order %s: amount %r differs from the order's %s; not applied",
                tenant.slug, payload["order_id"], report.gross_amount, order["gross_amount"])


async def apply_report(conn: Conn, tenant: TenantRecord, payload: dict[str, Any], order: DictRow,
                       report: TransactionReport, *, dedupe_key: str | None,
                       confirmation: dict[str, Any] | None = None, outcome: str | None = None,
                       only_changes: bool = False) -> tuple[Transition, bool]:
    """Decide and apply what `report` says to the locked `order`. Returns the transition and whether a
    confirmation email was queued (wake the outbox after commit). `outcome` replaces the
    transition's in the record (a status read's `confirmed_on_read`); such a record holds no key.
    `only_changes`: record nothing when the order would not change (a status read of a pending order)."""
    transition = decide_transition(order["payment_status"], report.transaction_status, report.fraud_status)
    if only_changes and transition.new_status is None:
        return transition, False
    wrote_outbox = await apply_transition(conn, tenant, payload, order, transition, report, dedupe_key=dedupe_key,
                                          confirmation=confirmation, outcome=outcome)
    return transition, wrote_outbox


async def apply_transition(conn: Conn, tenant: TenantRecord, payload: dict[str, Any], order: DictRow,
                           transition: Transition, report: TransactionReport, *, dedupe_key: str | None,
                           confirmation: dict[str, Any] | None = None, outcome: str | None = None) -> bool:
    """Record the decided transition and make it; True when a confirmation email was queued."""
    order_id = str(payload["order_id"])
    if transition.new_status is not None and not amount_matches(report.gross_amount, order["gross_amount"]):
        await reject_amount(conn, tenant, payload, order, report, confirmation)
        return False
    if not await record_event(conn, tenant, payload, outcome=outcome or transition.outcome,
                              dedupe_key=None if outcome else dedupe_key, confirmation=confirmation):
        return False  # a concurrent copy of the same notification got there first
    if transition.new_status is None:
        return False
    return await set_status(conn, tenant, order_id, order, transition.new_status,
                            transaction_id=report.transaction_id or field_text(payload.get("transaction_id"), None),
                            flagged=transition.outcome == "flagged_reversal")


async def apply_manual(conn: Conn, tenant: TenantRecord, order_id: str, order: DictRow, new_status: OrderStatus, *,
                       actor: str) -> bool:
    """A status an admin set by hand (the admin page; the caller checked the move is allowed), recorded
    with the admin as actor and made like Midtrans' word. True when a confirmation email was queued."""
    await conn.execute(
        "INSERT INTO payment_events (tenant_id, order_id, signature_valid, outcome, actor, payload) "
        "VALUES (%s, %s, false, 'manual', %s, %s)",
        (tenant.id, order_id, actor, Jsonb({"from": order["payment_status"], "to": new_status})))
    log.warning("tenant %s order %s: set %s -> %s by hand by admin %s", tenant.slug, order_id,
                order["payment_status"], new_status, actor)
    return await set_status(conn, tenant, order_id, order, new_status, transaction_id=None, flagged=False)


async def set_status(conn: Conn, tenant: TenantRecord, order_id: str, order: DictRow, new_status: OrderStatus, *,
                     transaction_id: str | None, flagged: bool) -> bool:
    """Change the locked order's status; on paid count the customer's order and queue the confirmation."""
    await conn.execute(
        "UPDATE orders SET payment_status = %s, transaction_id = coalesce(%s, transaction_id), status_flagged = %s, "
        "paid_at = CASE WHEN %s = 'paid' THEN now() ELSE paid_at END, updated_at = now() "
        "WHERE order_id = %s",
        (new_status, transaction_id, flagged, new_status, order_id))
    if new_status != "paid":
        return False
    await conn.execute(
        "UPDATE customers c SET total_orders = total_orders + 1, total_spent = total_spent + %s, "
        "updated_at = now() FROM orders o WHERE o.order_id = %s AND c.id = o.customer_id",
        (order["gross_amount"], order_id))
    return await queue_email(conn, tenant.id, order_id, PAYMENT_CONFIRMATION)

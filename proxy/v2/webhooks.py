"""`POST /webhooks/midtrans`: verify, deduplicate, apply with precedence, record, answer fast.

The tenant comes from the URL, Host or trusted header, never from the body. The signature is
checked with that tenant's key in constant time before anything else is believed. Every
notification for a known tenant is recorded in payment_events with its outcome. Suspended tenants
and tenants over quota still settle their payments. Emails go through the outbox after commit.

Answers follow Midtrans' retry rules: 200 when nothing more can be done (applied, duplicate,
ignored, unknown order, wrong amount), 403 for a forged notification, 400 for a malformed one,
503 when the database is down (Midtrans retries).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg
from aiohttp import web
from psycopg.types.json import Jsonb

from proxy import keys
from proxy.v2.db import TenantRecord
from proxy.v2.dryrun import is_dry_run
from proxy.v2.resolve import require_tenant
from proxy.v2.signature import signature_is_valid
from proxy.v2.status import decide_transition

log = logging.getLogger(__name__)

_RECORDED_FIELDS = ("order_id", "transaction_id", "transaction_status", "fraud_status", "status_code",
                    "gross_amount")


def _ok() -> web.Response:
    return web.Response(text="OK")  # what v1 answers, and what Midtrans expects


async def _record(conn: psycopg.AsyncConnection[Any], tenant: TenantRecord, payload: dict[str, Any],
                  *, valid: bool, outcome: str, dedupe_key: str | None = None) -> bool:
    """Insert the event; False when its dedupe key was already taken (a duplicate)."""
    stored = {k: v for k, v in payload.items() if k != "signature_key"}
    values = [payload.get(k) if isinstance(payload.get(k), str) else None for k in _RECORDED_FIELDS]
    cursor = await conn.execute(
        "INSERT INTO payment_events (tenant_id, order_id, transaction_id, transaction_status, fraud_status, "
        "status_code, gross_amount, signature_valid, outcome, dedupe_key, payload) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (tenant.id, *values, valid, outcome, dedupe_key, Jsonb(stored)))
    return cursor.rowcount == 1


def dedupe_key(payload: dict[str, Any]) -> str:
    parts = [str(payload.get(k) or "") for k in ("order_id", "transaction_id", "transaction_status",
                                                   "fraud_status", "status_code")]
    return "|".join(parts)


async def midtrans_notification(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    db = request.app[keys.V2_DB]
    raw = await request.read()
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, dict):
        async with db.tenant_tx(tenant.id) as conn:
            await _record(conn, tenant, {"raw": raw[:2000].decode("utf-8", "replace")}, valid=False,
                          outcome="malformed")
        return web.json_response({"success": False, "error": "malformed notification"}, status=400)

    if not signature_is_valid(payload, tenant.server_key.reveal()):
        async with db.tenant_tx(tenant.id) as conn:
            await _record(conn, tenant, payload, valid=False, outcome="forged")
        log.warning("tenant %s: notification with an invalid signature rejected (order %r)",
                    tenant.slug, str(payload.get("order_id"))[:60])
        return web.json_response({"success": False, "error": "invalid signature"}, status=403)

    order_id = str(payload["order_id"])
    wrote_outbox = False
    async with db.tenant_tx(tenant.id) as conn:
        key = dedupe_key(payload)
        cursor = await conn.execute("SELECT 1 FROM payment_events WHERE dedupe_key = %s", (key,))
        if await cursor.fetchone() is not None:
            await _record(conn, tenant, payload, valid=True, outcome="duplicate")
            return _ok()
        cursor = await conn.execute(
            "SELECT payment_status, gross_amount FROM orders WHERE order_id = %s FOR UPDATE", (order_id,))
        order = await cursor.fetchone()
        if order is None:
            # No dedupe key: if the order appears later (a migration catching up), a retry still applies.
            grace = tenant.unknown_order_retry_until
            if grace is not None and datetime.now(UTC) < grace:
                await _record(conn, tenant, payload, valid=True, outcome="unknown_order_retry")
                # 503: Midtrans retries (4 times, about 2 min to 3.5 h apart) while the order arrives.
                return web.json_response({"success": False, "error": "order_not_known_yet"}, status=503)
            await _record(conn, tenant, payload, valid=True, outcome="unknown_order")
            return _ok()  # nothing to apply it to; answered so Midtrans stops retrying
        transition = decide_transition(order["payment_status"], str(payload.get("transaction_status")),
                                       payload.get("fraud_status") if isinstance(payload.get("fraud_status"), str)
                                       else None)
        if transition.new_status is not None and not _amount_matches(payload.get("gross_amount"),
                                                                     order["gross_amount"]):
            await _record(conn, tenant, payload, valid=True, outcome="amount_mismatch", dedupe_key=key)
            log.warning("tenant %s order %s: notification amount %r differs from the order's %s; not applied",
                        tenant.slug, order_id, payload.get("gross_amount"), order["gross_amount"])
            return _ok()
        if not await _record(conn, tenant, payload, valid=True, outcome=transition.outcome, dedupe_key=key):
            return _ok()  # a concurrent copy of the same notification got there first
        if transition.new_status is not None:
            await conn.execute(
                "UPDATE orders SET payment_status = %s, transaction_id = %s, status_flagged = %s, "
                "paid_at = CASE WHEN %s = 'paid' THEN now() ELSE paid_at END, updated_at = now() "
                "WHERE order_id = %s",
                (transition.new_status, payload.get("transaction_id"), transition.outcome == "flagged_reversal",
                 transition.new_status, order_id))
            if transition.new_status == "paid":
                await conn.execute(
                    "UPDATE customers c SET total_orders = total_orders + 1, total_spent = total_spent + %s, "
                    "updated_at = now() FROM orders o WHERE o.order_id = %s AND c.id = o.customer_id",
                    (order["gross_amount"], order_id))
                cursor = await conn.execute(
                    "INSERT INTO notification_outbox (tenant_id, order_id, template) "
                    "VALUES (%s, %s, 'payment_confirmation') ON CONFLICT DO NOTHING", (tenant.id, order_id))
                wrote_outbox = cursor.rowcount == 1
    if wrote_outbox and not is_dry_run():
        request.app[keys.V2_OUTBOX].notify(tenant.id)  # after commit
    return _ok()


def _amount_matches(received: object, expected: int) -> bool:
    if not isinstance(received, str):
        return False
    try:
        return Decimal(received) == Decimal(expected)
    except InvalidOperation:
        return False

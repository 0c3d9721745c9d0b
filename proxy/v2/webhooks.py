"""`POST /webhooks/midtrans`: verify, check, confirm, deduplicate, apply with precedence, record.

The tenant comes from the URL, Host or trusted header, never from the body. The signature is
checked with that tenant's key in constant time before anything else is believed. The signature
does not cover `transaction_status` or `fraud_status`, so a signed notification is still only a
claim: its status code must agree with its status, and a move to paid, failed or refunded is made
on Midtrans' own answer (Get Status), never on the notification's. Every notification for a known
tenant is recorded in payment_events with its outcome; only one that was applied (or changed
nothing harmlessly) holds the deduplication key, so a rejected one never swallows the genuine
notification after it. Suspended tenants and tenants over quota still settle their payments.
Emails go through the outbox after commit.

Answers follow Midtrans' retry rules: 200 when nothing more can be done (applied, duplicate,
ignored, unknown order, wrong amount), 403 for a forged or altered notification, 400 for a
malformed one, 503 when the database or Get Status is unavailable (Midtrans retries).
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web
from psycopg.types.json import Jsonb

from controlplane.midtrans_answer import StatusUnavailable, TransactionReport
from proxy.serving.signature import signature_is_valid
from proxy.serving.status_codes import expected_status_code
from proxy.v2 import keys
from proxy.v2.db import TenantRecord
from proxy.v2.dryrun import is_dry_run
from proxy.v2.resolve import require_tenant
from proxy.v2.settle import (
    RECORDED_FIELDS,
    Conn,
    amount_matches,
    apply_report,
    apply_transition,
    field_text,
    lock_order,
    record_event,
    reject_amount,
)
from proxy.v2.status import decide_transition, needs_confirmation
from proxy.v2.throttle import client_address

log = logging.getLogger(__name__)

# What is kept of a notification that is not believed (malformed, bad signature): its recorded
# fields cut short and a prefix of its body, never the whole of what anyone may send.
_BODY_PREFIX_BYTES: Final = 2048
_UNBELIEVED_FIELD_CHARS: Final = 100


def _ok() -> web.Response:
    return web.Response(text="OK")  # what v1 answers, and what Midtrans expects


async def _record_unbelieved(conn: Conn, tenant: TenantRecord, payload: dict[str, Any], raw: bytes, *,
                             outcome: str) -> None:
    values = [field_text(payload.get(k), _UNBELIEVED_FIELD_CHARS) for k in RECORDED_FIELDS]
    prefix = raw[:_BODY_PREFIX_BYTES].decode("utf-8", "replace").replace("\x00", "\ufffd")
    await conn.execute(
        "INSERT INTO payment_events (tenant_id, order_id, transaction_id, transaction_status, fraud_status, "
        "status_code, gross_amount, signature_valid, outcome, payload) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, false, %s, %s)",
        (tenant.id, *values, outcome, Jsonb({"body_prefix": prefix, "body_bytes": len(raw)})))


def dedupe_key(payload: dict[str, Any]) -> str:
    parts = [str(payload.get(k) or "") for k in ("order_id", "transaction_id", "transaction_status",
                                                   "fraud_status", "status_code")]
    return "|".join(parts)


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


async def midtrans_notification(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    db = request.app[keys.V2_DB]
    raw = await request.read()
    # Unsigned writes anyone can make are bounded: past a rate of invalid ones per tenant and client,
    # nothing more is stored or logged until it refills (a genuine notification is never invalid).
    # From the check to the count of a failure nothing awaits, so concurrent forgeries cannot slip past.
    throttle = request.app[keys.V2_NOTIFICATION_THROTTLE]
    client = client_address(request.remote, request.headers.getall("X-Forwarded-For", ()),
                            request.app[keys.V2_SETTINGS].rule.peer_is_trusted)
    if (wait_s := throttle.wait_s(tenant.slug, client)) > 0:
        request.app[keys.V2_METRICS].invalid_notifications_throttled.labels(tenant.slug).inc()
        return web.json_response({"success": False, "error": "too_many_invalid_notifications"}, status=429,
                                 headers={"Retry-After": str(math.ceil(wait_s))})
    payload = _parse(raw)
    if payload is None:
        throttle.failed(tenant.slug, client)
        async with db.tenant_tx(tenant.id) as conn:
            await _record_unbelieved(conn, tenant, {}, raw, outcome="malformed")
        return web.json_response({"success": False, "error": "malformed notification"}, status=400)

    if not signature_is_valid(payload, tenant.server_key.reveal()):
        if throttle.failed(tenant.slug, client):  # logged as throttling starts, not once per forgery
            log.warning("tenant %s: invalid notifications from %s: throttled (the last for order %r)",
                        tenant.slug, client, str(payload.get("order_id"))[:60])
        async with db.tenant_tx(tenant.id) as conn:
            await _record_unbelieved(conn, tenant, payload, raw, outcome="forged")
        return web.json_response({"success": False, "error": "invalid signature"}, status=403)

    claim = TransactionReport.of(payload)
    expected = expected_status_code(claim.transaction_status, claim.fraud_status)
    if expected is not None and expected != claim.status_code:
        # A genuine notification whose status was changed after signing (a replayed 201 pending
        # re-sent as settlement): recorded without a dedupe key, so the real one still applies.
        async with db.tenant_tx(tenant.id) as conn:
            await record_event(conn, tenant, payload, outcome="inconsistent_status")
        log.warning("tenant %s order %s: status %r (fraud %r) with status code %r (expected %s); rejected",
                    tenant.slug, payload["order_id"], claim.transaction_status, claim.fraud_status,
                    claim.status_code, expected)
        return web.json_response({"success": False, "error": "status code does not match transaction status"},
                                 status=403)
    answer = await _settle_claim(request, tenant, payload, claim)
    if answer is not None:
        return answer
    return await _settle_confirmed(request, tenant, payload, claim)


async def _settle_claim(request: web.Request, tenant: TenantRecord, payload: dict[str, Any],
                        claim: TransactionReport) -> web.Response | None:
    """Deduplicate and decide on the notification's word; apply it unless money would move (None:
    Midtrans must confirm first)."""
    db = request.app[keys.V2_DB]
    async with db.tenant_tx(tenant.id) as conn:
        key = dedupe_key(payload)
        if await _key_taken(conn, key):
            await record_event(conn, tenant, payload, outcome="duplicate")
            return _ok()
        order = await lock_order(conn, str(payload["order_id"]))
        if order is None:
            return await _unknown_order(conn, tenant, payload)
        transition = decide_transition(order["payment_status"], claim.transaction_status, claim.fraud_status)
        if needs_confirmation(transition):
            if not amount_matches(claim.gross_amount, order["gross_amount"]):
                await reject_amount(conn, tenant, payload, order, claim)
                return _ok()
            return None
        wrote_outbox = await apply_transition(conn, tenant, payload, order, transition, claim, dedupe_key=key)
    return _after_commit(request, tenant, wrote_outbox)


async def _settle_confirmed(request: web.Request, tenant: TenantRecord, payload: dict[str, Any],
                            claim: TransactionReport) -> web.Response:
    """A move that moves money: Midtrans' own answer decides, asked outside any transaction."""
    db = request.app[keys.V2_DB]
    order_id = str(payload["order_id"])
    try:
        confirmed = await request.app[keys.V2_STATUS].transaction_status(
            order_id, server_key=tenant.server_key.reveal(), environment=tenant.environment)
        reason = "Midtrans does not know this order" if confirmed is None else ""
    except StatusUnavailable as exc:
        confirmed, reason = None, exc.reason
    if confirmed is None:
        async with db.tenant_tx(tenant.id) as conn:
            await record_event(conn, tenant, payload, outcome="unconfirmed", confirmation={"unavailable": reason})
        log.warning("tenant %s order %s: %s is not confirmed (%s); not applied, Midtrans will retry",
                    tenant.slug, order_id, claim.transaction_status, reason)
        return web.json_response({"success": False, "error": "confirmation_unavailable"}, status=503)

    agrees = confirmed.agrees_with(claim)
    if not agrees:
        log.warning("tenant %s order %s: the notification says %s (fraud %r), Midtrans says %s (fraud %r); "
                    "applying Midtrans' answer", tenant.slug, order_id, claim.transaction_status,
                    claim.fraud_status, confirmed.transaction_status, confirmed.fraud_status)
    key = dedupe_key(payload)
    async with db.tenant_tx(tenant.id) as conn:
        order = await lock_order(conn, order_id)
        if order is None:  # the service deletes no order; kept for a hand-edited database
            return await _unknown_order(conn, tenant, payload)
        if agrees and await _key_taken(conn, key):  # a concurrent copy was confirmed and applied first
            await record_event(conn, tenant, payload, outcome="duplicate")
            return _ok()
        # A contradicted notification holds no key: the genuine one with the same fields may come later.
        _, wrote_outbox = await apply_report(conn, tenant, payload, order, confirmed,
                                             dedupe_key=key if agrees else None, confirmation=confirmed.recorded())
    return _after_commit(request, tenant, wrote_outbox)


async def _key_taken(conn: Conn, key: str) -> bool:
    cursor = await conn.execute("SELECT 1 FROM payment_events WHERE dedupe_key = %s", (key,))
    return await cursor.fetchone() is not None


async def _unknown_order(conn: Conn, tenant: TenantRecord, payload: dict[str, Any]) -> web.Response:
    # No dedupe key: if the order appears later (a migration catching up), a retry still applies.
    grace = tenant.unknown_order_retry_until
    if grace is not None and datetime.now(UTC) < grace:
        await record_event(conn, tenant, payload, outcome="unknown_order_retry")
        # 503: Midtrans retries (4 times, about 2 min to 3.5 h apart) while the order arrives.
        return web.json_response({"success": False, "error": "order_not_known_yet"}, status=503)
    await record_event(conn, tenant, payload, outcome="unknown_order")
    return _ok()  # nothing to apply it to; answered so Midtrans stops retrying


def _after_commit(request: web.Request, tenant: TenantRecord, wrote_outbox: bool) -> web.Response:
    if wrote_outbox and not is_dry_run():
        request.app[keys.V2_OUTBOX].notify(tenant.id)
    return _ok()

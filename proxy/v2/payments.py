"""`POST /payment/create`: record the order, then ask Snap for a payment page.

1. In one transaction: refuse a suspended tenant, take one unit of the monthly quota (race-free:
   a conditional upsert on the tenant's counter row), upsert the customer, insert the order.
   It is committed before Snap is called, so a notification can never arrive for an order the
   database does not know.
2. Call Snap with the tenant's own key, environment and notification URL; no transaction is open
   meanwhile.
3. Store the token, and queue the order email (it carries the payment link) in that transaction;
   a repeat for the same pending order answers the token without calling Snap again.
Each of the two transactions is one statement, so one round trip (PaymentsDB.create_order and
store_payment_link, payments migration 0010).
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from typing import Any

import psycopg
from aiohttp import web

from controlplane.config.url_template import FINISH_PLACEHOLDERS, TemplateError, UrlTemplate
from proxy.v2 import keys
from proxy.v2.db import TenantRecord
from proxy.v2.dryrun import gateway_for, is_dry_run
from proxy.v2.email_templates import ORDER_CREATED
from proxy.v2.gateway import GatewayError, SnapRequest
from proxy.v2.resolve import require_tenant
from proxy.v2.responses import JsonError
from proxy.v2.settings import V2Settings
from proxy.v2.validation import CreateRequest, validate_create, validation_error_body

log = logging.getLogger(__name__)

_GATEWAY_ANSWERS = {
    "credentials": (502, "payment_gateway_credentials"),
    "order_id_taken": (409, "order_id_taken"),
    "rejected": (502, "payment_gateway_rejected"),
    "unavailable": (503, "payment_gateway_unavailable"),
}


def _paid_answer(order_id: str, token: str, redirect_url: str) -> web.Response:
    # v1's keys (success, paymentUrl, token) plus v2's redirectUrl.
    return web.json_response({"success": True, "paymentUrl": redirect_url, "redirectUrl": redirect_url,
                              "token": token, "orderId": order_id})


# One creation at a time per (tenant, order) inside a worker, so a burst of repeats (a double
# click) calls Snap once. Across workers, a loser of that race waits briefly for the winner's token.
_order_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()
_TOKEN_WAIT_S = (0.1, 0.2, 0.4, 0.8, 1.5)


async def create_payment(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return web.json_response(validation_error_body(["Request body must be valid JSON"]), status=400)
    create, details = validate_create(body)
    if create is None:
        return web.json_response(validation_error_body(details), status=400)
    if tenant.status != "active":
        raise JsonError(403, "tenant_not_active", "this shop is not accepting new orders")
    lock = _order_locks.get((tenant.slug, create.order_id))
    if lock is None:
        lock = _order_locks[(tenant.slug, create.order_id)] = asyncio.Lock()
    async with lock:
        return await _create(request, tenant, create)


async def _create(request: web.Request, tenant: TenantRecord, create: CreateRequest) -> web.Response:
    stored = await _record_order(request, tenant, create)
    if stored is not None:
        return _paid_answer(create.order_id, *stored)

    settings = request.app[keys.V2_SETTINGS]
    snap = SnapRequest(order_id=create.order_id, amount=create.amount, customer_name=create.name,
                       email=create.email, phone=create.phone, payment_method=create.payment_method,
                       notification_url=settings.notification_url(tenant.slug),
                       finish_url=_finish_url(settings, tenant, create.order_id))
    try:
        result = await gateway_for(request).create(
            snap, server_key=tenant.server_key.reveal(), environment=tenant.environment)
    except GatewayError as error:
        if error.kind == "order_id_taken":
            # A concurrent repeat in another worker may be storing its token right now.
            for delay_s in _TOKEN_WAIT_S:
                again = await _stored_token(request, tenant, create.order_id)
                if again is not None:
                    return _paid_answer(create.order_id, *again)
                await asyncio.sleep(delay_s)
        status, code = _GATEWAY_ANSWERS[error.kind]
        raise JsonError(status, code, error.message) from None

    # The order email carries the payment link, so it is queued with the link, in its transaction;
    # a concurrent repeat that stored first is answered with its link.
    token, redirect_url, queued = await request.app[keys.V2_DB].store_payment_link(
        tenant.id, create.order_id, snap_token=result.token, redirect_url=result.redirect_url,
        email_template=ORDER_CREATED)
    if queued and not is_dry_run():
        request.app[keys.V2_OUTBOX].notify(tenant.id)  # after commit
    return _paid_answer(create.order_id, token, redirect_url)


def _finish_url(settings: V2Settings, tenant: TenantRecord, order_id: str) -> str:
    """Where Snap sends the buyer: the tenant's finish URL, or the service's template. `tenant set`
    checks a tenant's; one that does not parse (a hand-edited row) falls back, never fails a create."""
    own = None
    if tenant.finish_url is not None:
        try:
            own = UrlTemplate.parse(tenant.finish_url, FINISH_PLACEHOLDERS, what="finish URL")
        except TemplateError as exc:
            log.warning("tenant %s: %s; using the service's finish URL template", tenant.slug, exc)
    return settings.finish_url(tenant.slug, order_id, own)


async def _record_order(request: web.Request, tenant: TenantRecord,
                        create: CreateRequest) -> tuple[str, str] | None:
    """Insert the order (committed), or find it; returns the stored Snap token if it has one."""
    db = request.app[keys.V2_DB]
    for _ in range(2):  # a concurrent insert of the same order id makes the second try a repeat
        try:
            row = await db.create_order(
                tenant.id, create.order_id, amount=create.amount, email=create.email, phone=create.phone,
                name=create.name, payment_method=create.payment_method, monthly_limit=tenant.max_orders_per_month)
        except psycopg.errors.UniqueViolation:
            continue
        if row["outcome"] == "exists":
            return _repeat(row, create)
        if row["outcome"] == "monthly_limit_reached":
            raise JsonError(429, "monthly_order_limit_reached",
                            f"this shop has reached its plan's limit of {tenant.max_orders_per_month} orders "
                            "this month")
        return None
    raise JsonError(409, "order_conflict", "this order is being created by another request; retry")


def _repeat(existing: dict[str, Any], create: CreateRequest) -> tuple[str, str] | None:
    if (existing["stored_amount"] != create.amount
            or existing["stored_email"].lower() != create.email.lower()):
        raise JsonError(409, "order_id_conflict",
                        "this order id is already used for a different amount or customer")
    if existing["stored_status"] != "pending":
        raise JsonError(409, "order_not_pending", f"this order is already {existing['stored_status']}",
                        orderStatus=existing["stored_status"])
    if existing["stored_snap_token"] and existing["stored_redirect_url"]:
        return existing["stored_snap_token"], existing["stored_redirect_url"]
    return None  # pending without a token (an earlier Snap call failed): ask Snap again


async def _stored_token(request: web.Request, tenant: TenantRecord, order_id: str) -> tuple[str, str] | None:
    async with request.app[keys.V2_DB].tenant_tx(tenant.id) as conn:
        cursor = await conn.execute("SELECT snap_token, redirect_url FROM orders WHERE order_id = %s", (order_id,))
        row = await cursor.fetchone()
    if row and row["snap_token"] and row["redirect_url"]:
        return row["snap_token"], row["redirect_url"]
    return None

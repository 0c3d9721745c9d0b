"""`POST /payment/create`: record the order, then ask Snap for a payment page.

1. In one transaction: refuse a suspended tenant, take one unit of the monthly quota (race-free:
   a conditional upsert on the tenant's counter row), upsert the customer, insert the order.
   It is committed before Snap is called, so a notification can never arrive for an order the
   database does not know.
2. Call Snap with the tenant's own key, environment and notification URL.
3. Store the token; a repeat for the same pending order answers it without calling Snap again.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from typing import Any

import psycopg
from aiohttp import web

from proxy import keys
from proxy.v2.db import TenantRecord
from proxy.v2.dryrun import gateway_for
from proxy.v2.gateway import GatewayError, SnapRequest
from proxy.v2.resolve import require_tenant
from proxy.v2.responses import JsonError
from proxy.v2.validation import CreateRequest, validate_create, validation_error_body

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
                       finish_url=settings.finish_url(tenant.slug))
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

    async with request.app[keys.V2_DB].tenant_tx(tenant.id) as conn:
        cursor = await conn.execute(
            "UPDATE orders SET snap_token = %s, redirect_url = %s, updated_at = now() "
            "WHERE order_id = %s AND snap_token IS NULL", (result.token, result.redirect_url, create.order_id))
        if cursor.rowcount == 0:  # a concurrent repeat stored first: answer with what is stored
            existing = await _stored_token(request, tenant, create.order_id, conn=conn)
            if existing is not None:
                return _paid_answer(create.order_id, *existing)
    return _paid_answer(create.order_id, result.token, result.redirect_url)


async def _record_order(request: web.Request, tenant: TenantRecord,
                        create: CreateRequest) -> tuple[str, str] | None:
    """Insert the order (committed), or find it; returns the stored Snap token if it has one."""
    db = request.app[keys.V2_DB]
    for _ in range(2):  # a concurrent insert of the same order id makes the second try a repeat
        try:
            async with db.tenant_tx(tenant.id) as conn:
                cursor = await conn.execute(
                    "SELECT gross_amount, email, payment_status, snap_token, redirect_url FROM orders "
                    "WHERE order_id = %s FOR UPDATE", (create.order_id,))
                existing = await cursor.fetchone()
                if existing is not None:
                    return _repeat(existing, create)
                await _take_quota(conn, tenant)
                cursor = await conn.execute(
                    "INSERT INTO customers (tenant_id, email, phone, name) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (tenant_id, email) DO UPDATE SET phone = EXCLUDED.phone, "
                    "name = EXCLUDED.name, updated_at = now() RETURNING id",
                    (tenant.id, create.email.lower(), create.phone, create.name))
                customer = await cursor.fetchone()
                assert customer is not None
                await conn.execute(
                    "INSERT INTO orders (tenant_id, order_id, customer_id, customer_name, email, phone, "
                    "gross_amount, payment_method) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (tenant.id, create.order_id, customer["id"], create.name, create.email, create.phone,
                     create.amount, create.payment_method))
                return None
        except psycopg.errors.UniqueViolation:
            continue
    raise JsonError(409, "order_conflict", "this order is being created by another request; retry")


def _repeat(existing: dict[str, Any], create: CreateRequest) -> tuple[str, str] | None:
    if existing["gross_amount"] != create.amount or existing["email"].lower() != create.email.lower():
        raise JsonError(409, "order_id_conflict",
                        "this order id is already used for a different amount or customer")
    if existing["payment_status"] != "pending":
        raise JsonError(409, "order_not_pending", f"this order is already {existing['payment_status']}",
                        orderStatus=existing["payment_status"])
    if existing["snap_token"] and existing["redirect_url"]:
        return existing["snap_token"], existing["redirect_url"]
    return None  # pending without a token (an earlier Snap call failed): ask Snap again


async def _take_quota(conn: psycopg.AsyncConnection[Any], tenant: TenantRecord) -> None:
    limit = tenant.max_orders_per_month
    if limit is None:
        return
    cursor = await conn.execute(
        "INSERT INTO usage_counters AS u (tenant_id, period_start, orders) "
        "VALUES (%s, date_trunc('month', now() AT TIME ZONE 'Asia/Jakarta')::date, 1) "
        "ON CONFLICT (tenant_id, period_start) DO UPDATE SET orders = u.orders + 1 WHERE u.orders < %s "
        "RETURNING orders", (tenant.id, limit))
    if await cursor.fetchone() is None or limit <= 0:
        raise JsonError(429, "monthly_order_limit_reached",
                        f"this shop has reached its plan's limit of {limit} orders this month")


async def _stored_token(request: web.Request, tenant: TenantRecord, order_id: str,
                        conn: psycopg.AsyncConnection[Any] | None = None) -> tuple[str, str] | None:
    query = "SELECT snap_token, redirect_url FROM orders WHERE order_id = %s"
    if conn is None:
        async with request.app[keys.V2_DB].tenant_tx(tenant.id) as own:
            row = await (await own.execute(query, (order_id,))).fetchone()
    else:
        row = await (await conn.execute(query, (order_id,))).fetchone()
    if row and row["snap_token"] and row["redirect_url"]:
        return row["snap_token"], row["redirect_url"]
    return None

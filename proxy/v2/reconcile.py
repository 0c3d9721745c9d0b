"""`/admin/reconcile`: orders whose notification never arrived, or arrived while Get Status was
down, settled on Midtrans' own word by v2's own rules.

- `GET /admin/reconcile?olderThan=900&within=604800&limit=500`: the candidates: orders pending
  for longer than `olderThan` seconds (created within `within`), and orders with a notification
  recorded `unconfirmed` that nothing confirmed since.
- `POST /admin/reconcile/{orderId}`: ask Get Status, decide with the webhook's precedence and
  apply with the webhook's own step (amount check, customer totals, confirmation email), recorded
  in payment_events as `reconciled` with Midtrans' answer. Get Status unavailable: 503, nothing
  applied.
- `GET /admin/reconcile/{orderId}`: Midtrans' answer and what it means, applying nothing (for
  orders v1 holds: the control plane reports them, it never writes v1).

The control plane drives these (`dualstack reconcile`): it may not import v2, and v2 holds the
rules, the tenant's key and the apply step, so there is one rule in one place. Each route needs
the tenant's admin token.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Final

from aiohttp import web
from psycopg import AsyncConnection
from psycopg.rows import DictRow

from controlplane.midtrans_answer import StatusUnavailable, TransactionReport
from controlplane.order_status import order_status_for
from proxy.v2 import keys
from proxy.v2.admin import authorize
from proxy.v2.db import TenantRecord
from proxy.v2.request_input import order_id_param, query_number
from proxy.v2.resolve import require_tenant
from proxy.v2.responses import JsonError
from proxy.v2.settle import apply_transition  # the webhook's own apply step, so both act alike
from proxy.v2.status import decide_transition
from proxy.v2.webhooks import _after_commit

MAX_CANDIDATES: Final = 5000

# An unconfirmed notification stays open until an event with Midtrans' answer follows it.
_CANDIDATES: Final = """
WITH open_unconfirmed AS (
    SELECT DISTINCT e.order_id FROM payment_events e
    WHERE e.outcome = 'unconfirmed' AND e.received_at > now() - make_interval(secs => %(within)s)
      AND NOT EXISTS (SELECT 1 FROM payment_events later WHERE later.order_id = e.order_id AND later.id > e.id
                      AND later.confirmation ? 'transaction_status')
), pending AS (
    SELECT order_id FROM orders
    WHERE payment_status = 'pending' AND created_at < now() - make_interval(secs => %(older)s)
      AND created_at > now() - make_interval(secs => %(within)s)
)
SELECT o.order_id, o.payment_status, o.created_at, (u.order_id IS NOT NULL) AS unconfirmed,
       (SELECT count(*) FROM pending) AS pending_past
FROM orders o LEFT JOIN open_unconfirmed u ON u.order_id = o.order_id
WHERE u.order_id IS NOT NULL OR o.order_id IN (SELECT order_id FROM pending)
ORDER BY o.created_at LIMIT %(limit)s
"""


async def _tenant(request: web.Request) -> TenantRecord:
    tenant = await require_tenant(request)
    authorize(request, tenant)
    return tenant


async def reconcile_candidates(request: web.Request) -> web.Response:
    tenant = await _tenant(request)
    params = {"older": query_number(request, "olderThan", 900, 0, 10 ** 8),
              "within": query_number(request, "within", 7 * 86400, 1, 10 ** 9),
              "limit": query_number(request, "limit", 500, 1, MAX_CANDIDATES)}
    async with request.app[keys.V2_DB].tenant_tx(tenant.id) as conn:
        cursor = await conn.execute(_CANDIDATES, params)
        rows = await cursor.fetchall()
    pending_past = int(rows[0]["pending_past"]) if rows else 0
    return web.json_response({"success": True, "pendingPastThreshold": pending_past, "orders": [
        {"orderId": r["order_id"], "status": r["payment_status"], "createdAt": r["created_at"].isoformat(),
         "reason": "unconfirmed" if r["unconfirmed"] else "pending"} for r in rows]})


async def _ask_midtrans(request: web.Request, tenant: TenantRecord, order_id: str) -> TransactionReport | None:
    try:
        return await request.app[keys.V2_STATUS].transaction_status(
            order_id, server_key=tenant.server_key.reveal(), environment=tenant.environment)
    except StatusUnavailable as exc:
        raise JsonError(503, "confirmation_unavailable", f"Midtrans' Get Status is unavailable ({exc.reason}); "
                        "nothing was applied", orderId=order_id, result="unavailable") from None


def _said(report: TransactionReport | None) -> dict[str, Any] | None:
    return None if report is None else {"transactionStatus": report.transaction_status,
                                        "fraudStatus": report.fraud_status, "grossAmount": report.gross_amount}


async def midtrans_view(request: web.Request) -> web.Response:
    tenant = await _tenant(request)
    order_id = order_id_param(request)
    async with request.app[keys.V2_DB].tenant_tx(tenant.id) as conn:
        cursor = await conn.execute("SELECT payment_status FROM orders WHERE order_id = %s", (order_id,))
        row = await cursor.fetchone()
    report = await _ask_midtrans(request, tenant, order_id)
    meaning = None if report is None else order_status_for(report.transaction_status, report.fraud_status)
    return web.json_response({"success": True, "orderId": order_id, "v2": row["payment_status"] if row else None,
                              "midtrans": _said(report), "status": meaning})


async def reconcile_order(request: web.Request) -> web.Response:
    tenant = await _tenant(request)
    order_id = order_id_param(request)
    db = request.app[keys.V2_DB]
    async with db.tenant_tx(tenant.id) as conn:
        cursor = await conn.execute("SELECT 1 FROM orders WHERE order_id = %s", (order_id,))
        known = await cursor.fetchone() is not None
    if not known:
        raise JsonError(404, "Order not found", "no such order", orderId=order_id)
    report = await _ask_midtrans(request, tenant, order_id)  # outside any transaction: no lock waits on Midtrans
    if report is None:
        return web.json_response({"success": True, "orderId": order_id, "result": "unknown_at_midtrans",
                                  "midtrans": None})
    payload = {**report.recorded(), "order_id": order_id, "source": "get_status"}
    confirmation = report.recorded()
    async with db.tenant_tx(tenant.id) as conn:
        cursor = await conn.execute(
            "SELECT payment_status, gross_amount FROM orders WHERE order_id = %s FOR UPDATE", (order_id,))
        order = await cursor.fetchone()
        assert order is not None  # the service deletes no order
        transition = decide_transition(order["payment_status"], report.transaction_status, report.fraud_status)
        answer: dict[str, Any] = {"success": True, "orderId": order_id, "from": order["payment_status"],
                                  "midtrans": _said(report), "reason": transition.reason}
        if transition.new_status is None:
            # Nothing to change; recorded only when it answers a notification Midtrans could not confirm.
            if await _open_unconfirmed(conn, order_id):
                await apply_transition(conn, tenant, payload, order, transition, report, dedupe_key=None,
                             confirmation={**confirmation, "transition": transition.outcome}, outcome="reconciled")
            return web.json_response({**answer, "result": transition.outcome})
        if not _same_amount(report.gross_amount, order["gross_amount"]):
            await apply_transition(conn, tenant, payload, order, transition, report, dedupe_key=None,
                                   confirmation=confirmation)
            return web.json_response({**answer, "result": "amount_mismatch"})
        wrote_outbox = await apply_transition(conn, tenant, payload, order, transition, report, dedupe_key=None,
                                    confirmation={**confirmation, "transition": transition.outcome},
                                    outcome="reconciled")
    _after_commit(request, tenant, wrote_outbox)
    return web.json_response({**answer, "result": "applied", "to": transition.new_status,
                              "flagged": transition.outcome == "flagged_reversal"})


async def _open_unconfirmed(conn: AsyncConnection[DictRow], order_id: str) -> bool:
    cursor = await conn.execute(
        "SELECT 1 FROM payment_events e WHERE e.order_id = %s AND e.outcome = 'unconfirmed' AND NOT EXISTS ("
        "SELECT 1 FROM payment_events later WHERE later.order_id = e.order_id AND later.id > e.id "
        "AND later.confirmation ? 'transaction_status') LIMIT 1", (order_id,))
    return await cursor.fetchone() is not None


def _same_amount(received: str, expected: int) -> bool:
    try:
        return Decimal(received) == Decimal(expected)
    except InvalidOperation:
        return False


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/reconcile", reconcile_candidates)
    app.router.add_post("/admin/reconcile/{orderId}", reconcile_order)
    app.router.add_get("/admin/reconcile/{orderId}", midtrans_view)

"""`GET /orders/{orderId}/status`: v1's response shape, scoped to the tenant by the database.

A recent pending order with a Snap transaction is checked with Midtrans first (read_confirm.py):
the buyer is often back on the thank-you page before Midtrans' notification arrives.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from controlplane.order_id import ORDER_ID_RE
from proxy.v2 import keys
from proxy.v2.db import TenantRecord
from proxy.v2.dryrun import is_dry_run
from proxy.v2.resolve import require_tenant
from proxy.v2.responses import JsonError
from proxy.v2.status import V1_SPELLING


async def order_status(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    order_id = request.match_info["orderId"]
    # No order has any other id (the orders table's check), so the database is not asked.
    row = await _read(request, tenant, order_id) if ORDER_ID_RE.fullmatch(order_id) else None
    if row is None:  # another tenant's order is invisible here, so it is a 404 too
        raise JsonError(404, "Order not found", "no such order")
    # A dry run (a mirrored read) asks nothing and applies nothing.
    ask = row["payment_status"] == "pending" and row["has_snap"] and row["recent"] and not is_dry_run()
    if ask and await request.app[keys.V2_READ_CONFIRMER].confirm(tenant, order_id) == "applied":
        row = await _read(request, tenant, order_id) or row
    return web.json_response({"success": True, "order": {
        "id": row["order_id"], "status": V1_SPELLING[row["payment_status"]],
        "totalAmount": row["gross_amount"], "customerName": row["customer_name"], "email": row["email"],
    }})


async def _read(request: web.Request, tenant: TenantRecord, order_id: str) -> dict[str, Any] | None:
    recent_s = request.app[keys.V2_SETTINGS].read_confirmation.recent_s
    return await request.app[keys.V2_DB].order_status(tenant.id, order_id, recent_s)

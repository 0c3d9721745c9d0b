"""`GET /orders/{orderId}/status`: v1's response shape, scoped to the tenant by the database."""

from __future__ import annotations

from aiohttp import web

from proxy import keys
from proxy.v2.resolve import require_tenant
from proxy.v2.responses import JsonError
from proxy.v2.status import V1_SPELLING


async def order_status(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    order_id = request.match_info["orderId"]
    async with request.app[keys.V2_DB].tenant_tx(tenant.id) as conn:
        cursor = await conn.execute(
            "SELECT order_id, payment_status, gross_amount, customer_name, email FROM orders "
            "WHERE order_id = %s", (order_id,))
        row = await cursor.fetchone()
    if row is None:  # another tenant's order is invisible here, so it is a 404 too
        raise JsonError(404, "Order not found", "no such order")
    return web.json_response({"success": True, "order": {
        "id": row["order_id"], "status": V1_SPELLING[row["payment_status"]],
        "totalAmount": row["gross_amount"], "customerName": row["customer_name"], "email": row["email"],
    }})

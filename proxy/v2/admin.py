"""`GET /admin/stats` (per-tenant admin token) and `GET /health`."""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from proxy import keys
from proxy.v2.resolve import find_tenant, require_tenant
from proxy.v2.responses import JsonError

_STATUSES = ("pending", "paid", "failed", "expired", "refunded")


async def admin_stats(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    expected = tenant.admin_token_sha256 or ""
    presented = hashlib.sha256(token.encode()).hexdigest()
    if not token or not expected or not hmac.compare_digest(presented, expected):
        raise JsonError(401, "unauthorized", "a valid admin token for this tenant is required (Bearer)")
    async with request.app[keys.V2_DB].tenant_tx(tenant.id) as conn:
        cursor = await conn.execute("SELECT payment_status, count(*) AS n, coalesce(sum(gross_amount), 0) AS total "
                                    "FROM orders GROUP BY payment_status")
        rows = {row["payment_status"]: row for row in await cursor.fetchall()}
    stats: dict[str, int] = {status: int(rows[status]["n"]) if status in rows else 0 for status in _STATUSES}
    stats["revenue"] = int(rows["paid"]["total"]) if "paid" in rows else 0
    return web.json_response({"success": True, "stats": stats})


async def health(request: web.Request) -> web.Response:
    settings = request.app[keys.V2_SETTINGS]
    db = request.app[keys.V2_DB]
    up = await db.ping()
    body: dict[str, object] = {"status": "ok" if up else "degraded", "version": settings.version,
                               "database": "up" if up else "down"}
    if up:
        tenant = await find_tenant(request)
        if tenant is not None:
            body["tenant"] = tenant.slug
    return web.json_response(body, status=200 if up else 503)

"""`GET /admin/stats` (per-tenant admin token; also guards /admin/reconcile) and the metrics listener.

/metrics is served on its own address (`--metrics-listen`, loopback), never on the service's:
the router forwards any path of a tenant's host to v2, and the metrics name every tenant."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math

from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.serving.exposition import metrics_handler
from proxy.v2 import keys
from proxy.v2.db import TenantRecord
from proxy.v2.resolve import require_tenant
from proxy.v2.responses import JsonError
from proxy.v2.throttle import client_address

log = logging.getLogger(__name__)

_STATUSES = ("pending", "paid", "failed", "expired", "refunded")


async def admin_stats(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    authorize(request, tenant)
    async with request.app[keys.V2_DB].tenant_tx(tenant.id) as conn:
        cursor = await conn.execute("SELECT payment_status, count(*) AS n, coalesce(sum(gross_amount), 0) AS total "
                                    "FROM orders GROUP BY payment_status")
        rows = {row["payment_status"]: row for row in await cursor.fetchall()}
    stats: dict[str, int] = {status: int(rows[status]["n"]) if status in rows else 0 for status in _STATUSES}
    stats["revenue"] = int(rows["paid"]["total"]) if "paid" in rows else 0
    return web.json_response({"success": True, "stats": stats})


def authorize(request: web.Request, tenant: TenantRecord) -> None:
    """The tenant's admin token, or 401; 429 while this client (or the tenant) is throttled."""
    throttle = request.app[keys.V2_THROTTLE]
    refused_total = request.app[keys.V2_METRICS].admin_token_refused
    rule = request.app[keys.V2_SETTINGS].rule
    client = client_address(request.remote, request.headers.getall("X-Forwarded-For", ()), rule.peer_is_trusted)
    wait_s = throttle.wait_s(tenant.slug, client)
    if wait_s > 0:
        refused_total.labels(tenant.slug, "throttled").inc()
        refused = JsonError(429, "too_many_attempts", "too many failed admin token attempts; try again later")
        refused.response.headers["Retry-After"] = str(math.ceil(wait_s))
        raise refused
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    expected = tenant.admin_token_sha256 or ""
    presented = hashlib.sha256(token.encode()).hexdigest()
    if not token or not expected or not hmac.compare_digest(presented, expected):
        refused_total.labels(tenant.slug, "failed").inc()
        if throttle.failed(tenant.slug, client):  # logged once as it starts, not once per guess
            log.warning("admin token guesses for tenant %s from %s: throttled", tenant.slug, client)
        raise JsonError(401, "unauthorized", "a valid admin token for this tenant is required (Bearer)")


def create_metrics_app(registry: CollectorRegistry) -> web.Application:
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(registry))
    return app

"""Composition root of the v2 payment service: create_v2_app() wires settings, pool, gateway, outbox."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import psycopg
import psycopg_pool
from aiohttp import web
from aiohttp.typedefs import Handler

from proxy import keys
from proxy.tasks import TaskPool
from proxy.v2.admin import admin_stats, health
from proxy.v2.db import PaymentsDB, make_pool
from proxy.v2.dryrun import dry_runs
from proxy.v2.gateway import MidtransGateway, PaymentGateway
from proxy.v2.openapi import DOCUMENT
from proxy.v2.orders import order_status
from proxy.v2.outbox import EmailSender, LogEmailSender, Outbox
from proxy.v2.payments import create_payment
from proxy.v2.responses import json_error, json_errors
from proxy.v2.settings import V2Settings
from proxy.v2.webhooks import midtrans_notification

log = logging.getLogger(__name__)


@web.middleware
async def database_unavailable(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A database outage is a 503 (Midtrans retries it), never a 500 with a stack trace."""
    try:
        return await handler(request)
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
        log.error("database unavailable while handling %s %s: %s", request.method, request.path,
                  type(exc).__name__)
        return json_error(503, "database_unavailable", "the payment database is unavailable; retry shortly")


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)


def create_v2_app(settings: V2Settings, *, gateway: PaymentGateway | None = None,
                  email_sender: EmailSender | None = None) -> web.Application:
    pool = make_pool(settings.database_url, settings.schema, max_size=settings.pool_max_size)
    db = PaymentsDB(pool, tenant_ttl_s=settings.tenant_cache_ttl_s)
    midtrans = MidtransGateway(settings.snap_urls) if gateway is None else None
    chosen: PaymentGateway = gateway if gateway is not None else midtrans  # type: ignore[assignment]
    outbox = Outbox(db, email_sender or LogEmailSender())
    tasks = TaskPool("v2", limit=4)

    app = web.Application(middlewares=[database_unavailable, json_errors, dry_runs], client_max_size=256 * 1024)
    app[keys.V2_SETTINGS] = settings
    app[keys.V2_DB] = db
    app[keys.V2_GATEWAY] = chosen
    app[keys.V2_OUTBOX] = outbox

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await pool.open(wait=False)  # start even while the database is down; /health says so
        if midtrans is not None:
            await midtrans.start()
        tasks.spawn(outbox.run(), name="outbox")
        yield
        await tasks.close(timeout_s=0)
        if midtrans is not None:
            await midtrans.close()
        await pool.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/payment/create", create_payment)
    app.router.add_get("/orders/{orderId}/status", order_status)
    app.router.add_post("/webhooks/midtrans", midtrans_notification)
    app.router.add_get("/health", health)
    app.router.add_get("/admin/stats", admin_stats)
    app.router.add_get("/openapi.json", openapi)
    return app

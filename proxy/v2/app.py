"""Composition root of the v2 payment service: create_v2_app() wires settings, pool, gateway, metrics, outbox."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry

from proxy.serving.tasks import TaskPool
from proxy.v2 import keys
from proxy.v2.admin import admin_stats
from proxy.v2.admin_page import AdminSessions
from proxy.v2.admin_page import add_routes as add_admin_page_routes
from proxy.v2.cors import cors
from proxy.v2.db import DATABASE_DOWN, PaymentsDB, make_pool
from proxy.v2.dryrun import dry_runs
from proxy.v2.email_templates import EmailTemplates
from proxy.v2.gateway import MidtransGateway, PaymentGateway
from proxy.v2.health import add_routes as add_health_routes
from proxy.v2.metrics import V2Metrics
from proxy.v2.openapi import DOCUMENT
from proxy.v2.orders import order_status
from proxy.v2.outbox import EmailSender, Outbox
from proxy.v2.payments import create_payment
from proxy.v2.read_confirm import ReadConfirmer, ReadRation
from proxy.v2.reconcile import add_routes as add_reconcile_routes
from proxy.v2.responses import json_error, json_errors
from proxy.v2.settings import V2Settings
from proxy.v2.smtp import SmtpSender
from proxy.v2.throttle import FailureThrottle
from proxy.v2.webhooks import midtrans_notification

log = logging.getLogger(__name__)


@web.middleware
async def database_unavailable(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A database outage is a 503 (Midtrans retries it), never a 500 with a stack trace."""
    try:
        return await handler(request)
    except DATABASE_DOWN as exc:
        log.error("database unavailable while handling %s %s: %s", request.method, request.path,
                  type(exc).__name__)
        return json_error(503, "database_unavailable", "the payment database is unavailable; retry shortly")


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(DOCUMENT)


def create_v2_app(settings: V2Settings, *, gateway: PaymentGateway | None = None,
                  email_sender: EmailSender | None = None, registry: CollectorRegistry | None = None,
                  environ: Mapping[str, str] = os.environ,
                  admin_clock: Callable[[], float] = time.time) -> web.Application:
    """`environ`: where the relays' credentials are read (DUALSTACK_SMTP_USERNAME_<NAME>, ...);
    `admin_clock`: the wall clock the admin page's session tokens are issued and checked by."""
    pool = make_pool(settings.database_url, settings.schema, max_size=settings.pool_max_size)
    db = PaymentsDB(pool, tenant_ttl_s=settings.tenant_cache_ttl_s)
    midtrans = MidtransGateway(settings.snap_urls, core_urls=settings.core_urls,
                               status_timeout_s=settings.status_timeout_s)
    chosen: PaymentGateway = gateway if gateway is not None else midtrans
    metrics = V2Metrics(registry if registry is not None else CollectorRegistry())
    sender = email_sender or SmtpSender(timeout_s=settings.delivery.send_timeout_s, ca_file=settings.smtp_ca_file)
    outbox = Outbox(db, sender, EmailTemplates(settings.email_templates), metrics, policy=settings.delivery,
                    environ=environ, base_domain=settings.base_domain)
    tasks = TaskPool("v2", limit=4)

    # CORS outermost: every answer, a 503 or aiohttp's own 404 included, carries its headers.
    app = web.Application(middlewares=[cors, database_unavailable, json_errors, dry_runs],
                          client_max_size=256 * 1024)
    app[keys.V2_SETTINGS] = settings
    app[keys.V2_DB] = db
    app[keys.V2_GATEWAY] = chosen
    app[keys.V2_STATUS] = midtrans  # Get Status: Midtrans' own word, whichever gateway creates payments
    app[keys.V2_OUTBOX] = outbox
    app[keys.V2_THROTTLE] = FailureThrottle()
    # Invalid notifications: a genuine Midtrans never sends one, so a few a minute is already noise.
    app[keys.V2_NOTIFICATION_THROTTLE] = FailureThrottle(per_client=20, per_tenant=200)
    app[keys.V2_METRICS] = metrics
    app[keys.V2_ADMIN_SESSIONS] = AdminSessions(clock=admin_clock)
    policy = settings.read_confirmation
    app[keys.V2_READ_CONFIRMER] = ReadConfirmer(policy, ReadRation(policy), db, midtrans, outbox, metrics)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await pool.open(wait=False)  # start even while the database is down; /health says so
        await midtrans.start()
        tasks.spawn(outbox.run(), name="outbox")
        yield
        await tasks.close(timeout_s=0)
        await midtrans.close()
        await pool.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/payment/create", create_payment)
    app.router.add_get("/orders/{orderId}/status", order_status)
    app.router.add_post("/webhooks/midtrans", midtrans_notification)
    add_health_routes(app)
    app.router.add_get("/admin/stats", admin_stats)
    add_reconcile_routes(app)
    add_admin_page_routes(app)
    app.router.add_get("/openapi.json", openapi)
    return app

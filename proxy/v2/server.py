"""`dualstack v2 serve`: the v2 payment service as a process (optionally several workers).

Its own options and apps (the service, and /metrics on a listener of its own); the start-up,
signals and draining are the ones both servers share (proxy/serving/startup.py).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from controlplane.arguments import Parser
from controlplane.config.address import ListenAddress, parse_listen
from controlplane.config.model import DEFAULT_BASE_DOMAIN
from controlplane.config.url_template import (
    DEFAULT_FINISH_URL_TEMPLATE,
    DEFAULT_NOTIFICATION_URL_TEMPLATE,
    FINISH_PLACEHOLDERS,
    NOTIFICATION_PLACEHOLDERS,
    TemplateError,
    UrlTemplate,
)
from proxy.serving import startup
from proxy.serving.startup import Listener, ServingOptions
from proxy.v2.admin import create_metrics_app
from proxy.v2.app import create_v2_app
from proxy.v2.email_templates import TEMPLATES_DIR
from proxy.v2.settings import DeliveryPolicy, V2Settings, tenant_rule

log = logging.getLogger("dualstack.v2")


@dataclass(frozen=True, slots=True)
class V2Options:
    serving: ServingOptions
    database_url: str
    routing: str | None
    base_domain: str
    schema: str
    notification_url_template: str
    finish_url_template: str
    snap_urls: dict[str, str]
    pool_size: int
    core_urls: dict[str, str] = field(default_factory=dict)
    metrics_listen: ListenAddress | None = None
    email_templates: Path = TEMPLATES_DIR
    smtp_ca_file: str | None = None
    smtp_timeout_s: float = 30.0


def parse_args(argv: list[str] | None, prog: str) -> V2Options:
    parser = Parser(prog=prog, description="Run the v2 tenant-aware payment service.")
    parser.add_argument("--database-url", default=os.environ.get("DUALSTACK_DATABASE_URL"),
                        help="PostgreSQL URL of the application role (default: $DUALSTACK_DATABASE_URL)")
    startup.add_serving_arguments(parser, listen="127.0.0.1:3010", drain_timeout_s=20.0)
    parser.add_argument("--routing", help="the router's routing file: the same tenant rule (base domain, "
                        "platform subdomains, trusted proxies, tenant hosts)")
    parser.add_argument("--base-domain", default=DEFAULT_BASE_DOMAIN, help="when no --routing file is given")
    parser.add_argument("--schema", default="payments", help="the schema `dualstack db migrate` created")
    parser.add_argument("--notification-url-template", default=DEFAULT_NOTIFICATION_URL_TEMPLATE,
                        help="where Midtrans sends each tenant's notifications; placeholders {slug}, {base_domain}")
    parser.add_argument("--finish-url-template", default=DEFAULT_FINISH_URL_TEMPLATE,
                        help="where Snap sends the buyer after paying, for tenants without a finish URL of "
                        "their own; placeholders {slug}, {base_domain}, {order_id} (default: %(default)s)")
    parser.add_argument("--snap-url-sandbox", help="override the sandbox Snap endpoint (a local fake)")
    parser.add_argument("--snap-url-production", help="override the production Snap endpoint")
    parser.add_argument("--core-url-sandbox", help="override the sandbox Core API base (Get Status; a local fake)")
    parser.add_argument("--core-url-production", help="override the production Core API base")
    parser.add_argument("--pool-size", type=int, default=10, help="database connections per worker")
    parser.add_argument("--metrics-listen", help="HOST:PORT for /metrics (e.g. 127.0.0.1:3011); never the "
                        "service's own address, which the router forwards tenants' requests to")
    parser.add_argument("--email-templates", type=Path, default=TEMPLATES_DIR,
                        help="the email templates folder (<language>/..., tenants/<slug>/...)")
    parser.add_argument("--smtp-ca-file", help="trust this CA for the relays' certificates (default: the system's)")
    parser.add_argument("--smtp-timeout", type=float, default=30.0, dest="smtp_timeout_s",
                        help="seconds one SMTP conversation may take (connect to QUIT)")
    ns = parser.parse_args(argv)
    if not ns.database_url:
        parser.error("--database-url (or DUALSTACK_DATABASE_URL) is required")
    serving = startup.serving_options(parser, ns)
    try:  # every placeholder works, or v2 does not start (a create never fails on a template)
        UrlTemplate.parse(ns.notification_url_template, NOTIFICATION_PLACEHOLDERS, what="--notification-url-template")
        UrlTemplate.parse(ns.finish_url_template, FINISH_PLACEHOLDERS, what="--finish-url-template")
    except TemplateError as exc:
        parser.error(str(exc))
    try:
        metrics_listen = parse_listen(ns.metrics_listen) if ns.metrics_listen else None
    except ValueError as exc:
        parser.error(str(exc))
    if not 0 < ns.smtp_timeout_s <= 150:
        parser.error("--smtp-timeout must be between 0 and 150 seconds (the outbox's lease is 300 s)")
    snap = {k: v for k, v in (("sandbox", ns.snap_url_sandbox), ("production", ns.snap_url_production)) if v}
    core = {k: v for k, v in (("sandbox", ns.core_url_sandbox), ("production", ns.core_url_production)) if v}
    return V2Options(serving, ns.database_url, ns.routing, ns.base_domain, ns.schema,
                     ns.notification_url_template, ns.finish_url_template, snap, ns.pool_size, core,
                     metrics_listen, ns.email_templates, ns.smtp_ca_file, ns.smtp_timeout_s)


def main(argv: list[str] | None = None, prog: str = "python -m proxy.v2") -> int:
    options = parse_args(argv, prog)
    return startup.start(options.serving, run_worker, options)


def run_worker(options: V2Options, supervisor_pid: int | None = None) -> int:
    return startup.run_worker(options.serving, lambda: _serve(options, supervisor_pid), log)


async def _serve(options: V2Options, supervisor_pid: int | None) -> int:
    serving = options.serving
    rule, base_domain = tenant_rule(options.routing, options.base_domain)
    settings = V2Settings(database_url=options.database_url, rule=rule, base_domain=base_domain,
                          schema=options.schema, notification_url_template=options.notification_url_template,
                          finish_url_template=options.finish_url_template, snap_urls=options.snap_urls,
                          core_urls=options.core_urls, pool_max_size=options.pool_size,
                          email_templates=options.email_templates, smtp_ca_file=options.smtp_ca_file,
                          delivery=DeliveryPolicy(send_timeout_s=options.smtp_timeout_s))
    registry = CollectorRegistry()
    runner = web.AppRunner(create_v2_app(settings, registry=registry), handle_signals=False, access_log=None,
                           shutdown_timeout=serving.drain_timeout_s)
    listeners = [Listener(runner, serving.listen)]
    listening = f"v2 {settings.version} listening on {serving.listen}"
    if options.metrics_listen is not None:
        metrics = web.AppRunner(create_metrics_app(registry), handle_signals=False, access_log=None)
        listeners.append(Listener(metrics, options.metrics_listen))
        listening += f", metrics on {options.metrics_listen}/metrics"
    return await startup.serve_until_stopped(
        serving, listeners, log, listening=listening,
        on_reload=lambda: log.info("SIGHUP: v2 has no file to reload"), supervisor_pid=supervisor_pid)

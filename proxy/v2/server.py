"""`dualstack v2 serve`: the v2 payment service as a process (optionally several workers)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from dataclasses import dataclass

from aiohttp import web

from controlplane.config import ConfigError
from controlplane.config.address import ListenAddress, parse_listen
from proxy.tasks import TaskPool
from proxy.v2.app import create_v2_app
from proxy.v2.settings import V2Settings, tenant_rule
from proxy.workers import signals_ready, stop_when_orphaned, supervise

log = logging.getLogger("dualstack.v2")


@dataclass(frozen=True, slots=True)
class V2Options:
    database_url: str
    listen: ListenAddress
    workers: int
    routing: str | None
    base_domain: str
    schema: str
    notification_url_template: str
    finish_url_template: str | None
    snap_urls: dict[str, str]
    pool_size: int
    drain_timeout_s: float
    log_level: str


def parse_args(argv: list[str] | None, prog: str) -> V2Options:
    parser = argparse.ArgumentParser(prog=prog, description="Run the v2 tenant-aware payment service.")
    parser.add_argument("--database-url", default=os.environ.get("DUALSTACK_DATABASE_URL"),
                        help="PostgreSQL URL of the application role (default: $DUALSTACK_DATABASE_URL)")
    parser.add_argument("--listen", default="127.0.0.1:3010")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--routing", help="the router's routing file: the same tenant rule (base domain, "
                        "platform subdomains, trusted proxies, tenant hosts)")
    parser.add_argument("--base-domain", default="agentbar.ai", help="when no --routing file is given")
    parser.add_argument("--schema", default="payments")
    parser.add_argument("--notification-url-template", default="https://{slug}.{base_domain}/webhooks/midtrans",
                        help="where Midtrans sends each tenant's notifications")
    parser.add_argument("--finish-url-template", help="where Snap sends the buyer after paying")
    parser.add_argument("--snap-url-sandbox", help="override the sandbox Snap endpoint (a local fake)")
    parser.add_argument("--snap-url-production", help="override the production Snap endpoint")
    parser.add_argument("--pool-size", type=int, default=10, help="database connections per worker")
    parser.add_argument("--drain-timeout", type=float, default=20.0, dest="drain_timeout_s")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    ns = parser.parse_args(argv)
    if not ns.database_url:
        parser.error("--database-url (or DUALSTACK_DATABASE_URL) is required")
    try:
        listen = parse_listen(ns.listen)
    except ValueError as exc:
        parser.error(str(exc))
    snap = {k: v for k, v in (("sandbox", ns.snap_url_sandbox), ("production", ns.snap_url_production)) if v}
    return V2Options(ns.database_url, listen, ns.workers, ns.routing, ns.base_domain, ns.schema,
                     ns.notification_url_template, ns.finish_url_template, snap, ns.pool_size,
                     ns.drain_timeout_s, ns.log_level)


def main(argv: list[str] | None = None, prog: str = "python -m proxy.v2") -> int:
    options = parse_args(argv, prog)
    if options.workers > 1:
        return supervise(options.workers, run_worker, options)
    return run_worker(options)


def run_worker(options: V2Options, supervisor_pid: int | None = None) -> int:
    logging.basicConfig(level=options.log_level,
                        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover
        pass
    try:
        rule, base_domain = tenant_rule(options.routing, options.base_domain)
    except ConfigError as exc:
        for issue in exc.issues:
            log.error("%s", issue)
        return 2
    settings = V2Settings(database_url=options.database_url, rule=rule, base_domain=base_domain,
                          schema=options.schema, notification_url_template=options.notification_url_template,
                          finish_url_template=options.finish_url_template, snap_urls=options.snap_urls,
                          pool_max_size=options.pool_size)
    try:
        return asyncio.run(_serve(options, settings, supervisor_pid))
    except OSError as exc:
        log.error("cannot listen on %s: %s", options.listen, exc)
        return 1


async def _serve(options: V2Options, settings: V2Settings, supervisor_pid: int | None) -> int:
    runner = web.AppRunner(create_v2_app(settings), handle_signals=False, access_log=None,
                           shutdown_timeout=options.drain_timeout_s)
    await runner.setup()
    await web.TCPSite(runner, options.listen.host, options.listen.port, reuse_port=options.workers > 1).start()
    log.info("v2 %s listening on %s", settings.version, options.listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: log.info("SIGHUP: v2 has no file to reload"))
    signals_ready()
    watch = TaskPool("v2-process", limit=1)
    if supervisor_pid is not None:
        watch.spawn(stop_when_orphaned(supervisor_pid, stop), name="supervisor-watch")
    await stop.wait()
    log.info("draining")
    await watch.close(timeout_s=0)
    await runner.cleanup()
    return 0

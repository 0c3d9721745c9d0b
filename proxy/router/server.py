"""Running the router as a process: its options, its two apps, what SIGHUP and a drain do to it.

The rest is the start-up both servers share (proxy/serving/startup.py): `--workers N` (N > 1)
starts N worker processes that each bind the same ports with SO_REUSEPORT, so the kernel spreads
connections across both cores; the parent supervises: it forwards SIGTERM/SIGINT (drain and stop),
restarts a worker that dies unexpectedly, and owns the routing file: it parses it once for every
worker, at start and on each change or SIGHUP (proxy/router/handout.py).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from controlplane.arguments import Parser
from controlplane.config import ConfigError, ConfigFile
from controlplane.config.address import ListenAddress
from proxy.router import keys
from proxy.router.app import create_apps
from proxy.router.connections import ConnectionGuard, handler_args
from proxy.router.handout import Handout, RoutingPublisher
from proxy.router.notification_keys import DATABASE_URL_ENV, KEYS_FILE_ENV, key_store_from_environment
from proxy.serving import startup
from proxy.serving.startup import EVENT_LOOPS, Listener, ServingOptions
from proxy.serving.workers import EXIT_UNUSABLE

log = logging.getLogger("dualstack.router")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    serving: ServingOptions
    config: str
    admin_listen: ListenAddress
    access_log: bool
    event_loop: str
    state_database_url: str | None


def parse_args(argv: list[str] | None, prog: str = "dualstack serve") -> ServeOptions:
    parser = Parser(prog=prog, description="Run the dual-stack router.")
    parser.add_argument("--config", required=True, help="routing YAML file (reloaded live)")
    startup.add_serving_arguments(parser, listen="127.0.0.1:8080", drain_timeout_s=30.0)
    parser.add_argument("--admin-listen", default="127.0.0.1:9100",
                        help="HOST:PORT for /metrics, /healthz, /readyz, /routes")
    parser.add_argument("--access-log", action="store_true", help="log every request (costs CPU)")
    parser.add_argument("--state-database-url", default=os.environ.get("DUALSTACK_STATE_DATABASE_URL"),
                        help="PostgreSQL URL where shadow results are stored (default: "
                        "$DUALSTACK_STATE_DATABASE_URL; without it the router shadows and counts only)")
    parser.add_argument("--event-loop", choices=EVENT_LOOPS, default="uvloop",
                        help="uvloop (default; see bench/router.py for what it buys) or the standard loop")
    ns = parser.parse_args(argv)
    serving = startup.serving_options(parser, ns)
    return ServeOptions(serving, ns.config, startup.listen_address(parser, ns.admin_listen), ns.access_log,
                        ns.event_loop, ns.state_database_url)


def main(argv: list[str] | None = None, prog: str = "dualstack serve") -> int:
    options = parse_args(argv, prog)
    if options.serving.workers == 1:
        return startup.start(options.serving, run_worker, options)
    startup.configure_logging(options.serving.log_level)
    try:
        publisher = RoutingPublisher(ConfigFile(options.config))
    except ConfigError as exc:
        for issue in exc.issues:
            log.error("%s", issue)
        log.error("the routing file is unusable; not starting (fix it, then check it with: dualstack validate %s)",
                  options.config)
        return EXIT_UNUSABLE
    try:
        return startup.start(options.serving, run_worker, options, publisher)
    finally:
        publisher.close()


def run_worker(options: ServeOptions, supervisor_pid: int | None = None, handout: Handout | None = None) -> int:
    if handout is not None:
        handout.close_inherited()
    return startup.run_worker(options.serving, lambda: _serve(options, supervisor_pid, handout), log,
                              event_loop=options.event_loop)


async def _serve(options: ServeOptions, supervisor_pid: int | None, handout: Handout | None) -> int:
    serving = options.serving
    notification_keys = key_store_from_environment()
    if notification_keys is None:
        log.error("no notification key source (%s or %s): every Midtrans notification is answered 503 "
                  "(Midtrans retries) until one is set; none is delivered unverified", KEYS_FILE_ENV, DATABASE_URL_ENV)
    app, admin_app = create_apps(options.config, CollectorRegistry(), state_database_url=options.state_database_url,
                                 notification_keys=notification_keys, handout=handout)
    state = app[keys.STATE]
    # What start-up built (modules, apps, the first routing snapshot) lives as long as the worker: the
    # collector's full passes, which reloads of a 10,000-tenant file trigger, need not walk it again.
    gc.freeze()
    # The connection limits are read once, at start: aiohttp fixes a handler's settings when it is made.
    limits = state.table.config.limits
    guard = ConnectionGuard(limits, app[keys.METRICS])

    def drain() -> None:
        state.draining = True  # /readyz answers 503 from now on

    return await startup.serve_until_stopped(serving, [
        Listener(web.AppRunner(app, handle_signals=False, handler_cancellation=True,
                               access_log=log if options.access_log else None,
                               shutdown_timeout=serving.drain_timeout_s, **handler_args(limits)),
                 serving.listen, backlog=1024, protocol=guard.factory),
        Listener(web.AppRunner(admin_app, handle_signals=False, access_log=None), options.admin_listen),
    ], log, listening=f"router listening on {serving.listen}, admin on {options.admin_listen}",
        on_reload=state.request_reload if handout is None else _reload_is_the_supervisors,
        on_drain=drain, supervisor_pid=supervisor_pid)


def _reload_is_the_supervisors() -> None:
    log.warning("SIGHUP reached a worker, which does not read the routing file: send it to the router's "
                "supervisor (kill -HUP %d), which parses the file for every worker", os.getppid())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

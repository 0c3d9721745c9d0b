"""Running the router as a process: listeners, worker processes, signals, draining.

`--workers N` (N > 1) starts N worker processes that each bind the same ports with SO_REUSEPORT,
so the kernel spreads connections across both cores. The parent only supervises: it forwards
SIGHUP (reload) and SIGTERM/SIGINT (drain and stop) and restarts a worker that dies unexpectedly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from controlplane.config import ConfigError
from controlplane.config.address import ListenAddress, parse_listen
from proxy import keys
from proxy.app import create_apps
from proxy.workers import signals_ready, stop_when_orphaned, supervise

log = logging.getLogger("dualstack.router")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    config: str
    listen: ListenAddress
    admin_listen: ListenAddress
    workers: int
    drain_timeout_s: float
    log_level: str
    access_log: bool
    event_loop: str
    state_database_url: str | None


def parse_args(argv: list[str] | None, prog: str = "dualstack serve") -> ServeOptions:
    parser = argparse.ArgumentParser(prog=prog, description="Run the dual-stack router.")
    parser.add_argument("--config", required=True, help="routing YAML file (reloaded live)")
    parser.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT, [::1]:8080 for IPv6")
    parser.add_argument("--admin-listen", default="127.0.0.1:9100",
                        help="HOST:PORT for /metrics, /healthz, /readyz, /routes")
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the port")
    parser.add_argument("--drain-timeout", type=float, default=30.0, dest="drain_timeout_s",
                        help="seconds SIGTERM waits for in-flight requests")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--access-log", action="store_true", help="log every request (costs CPU)")
    parser.add_argument("--state-database-url", default=os.environ.get("DUALSTACK_STATE_DATABASE_URL"),
                        help="PostgreSQL URL where shadow results are stored (default: "
                        "$DUALSTACK_STATE_DATABASE_URL; without it the router shadows and counts only)")
    parser.add_argument("--event-loop", choices=["uvloop", "asyncio"], default="uvloop",
                        help="uvloop (default; see bench/router.py for what it buys) or the standard loop")
    ns = parser.parse_args(argv)
    try:
        listen = parse_listen(ns.listen)
        admin = parse_listen(ns.admin_listen)
    except ValueError as exc:
        parser.error(str(exc))
    if ns.workers < 1:
        parser.error("--workers must be at least 1")
    return ServeOptions(ns.config, listen, admin, ns.workers, ns.drain_timeout_s, ns.log_level,
                        ns.access_log, ns.event_loop, ns.state_database_url)


def main(argv: list[str] | None = None, prog: str = "dualstack serve") -> int:
    options = parse_args(argv, prog)
    _configure_logging(options.log_level)
    if options.workers == 1:
        return run_worker(options)
    return supervise(options.workers, run_worker, options)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")


def run_worker(options: ServeOptions, supervisor_pid: int | None = None) -> int:
    _configure_logging(options.log_level)  # a spawned worker starts with no logging set up
    if options.event_loop == "uvloop":
        _install_uvloop()
    try:
        return asyncio.run(_serve(options, supervisor_pid))
    except ConfigError as exc:
        for issue in exc.issues:
            log.error("%s", issue)
        log.error("the routing file is unusable; not starting")
        return 2
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        return 1


async def _serve(options: ServeOptions, supervisor_pid: int | None) -> int:
    registry = CollectorRegistry()
    app, admin_app = create_apps(options.config, registry, state_database_url=options.state_database_url)
    state = app[keys.STATE]
    reuse_port = options.workers > 1
    runner = web.AppRunner(app, handle_signals=False, handler_cancellation=True,
                           access_log=log if options.access_log else None,
                           shutdown_timeout=options.drain_timeout_s)
    admin_runner = web.AppRunner(admin_app, handle_signals=False, access_log=None)
    await runner.setup()
    await admin_runner.setup()
    try:
        await web.TCPSite(runner, options.listen.host, options.listen.port,
                          reuse_port=reuse_port, backlog=1024).start()
        await web.TCPSite(admin_runner, options.admin_listen.host, options.admin_listen.port,
                          reuse_port=reuse_port).start()
    except OSError:
        await runner.cleanup()
        await admin_runner.cleanup()
        raise
    log.info("router listening on %s, admin on %s", options.listen, options.admin_listen)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, state.request_reload)
    signals_ready()
    if supervisor_pid is not None:
        app[keys.TASKS].spawn(stop_when_orphaned(supervisor_pid, stop), name="supervisor-watch")
    await stop.wait()
    log.info("draining: no new connections, waiting up to %.0fs for in-flight requests",
             options.drain_timeout_s)
    state.draining = True
    started = time.monotonic()
    await runner.cleanup()  # stops listening, then waits for in-flight handlers
    await admin_runner.cleanup()
    log.info("stopped after draining for %.1fs", time.monotonic() - started)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

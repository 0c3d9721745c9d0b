"""The start-up both servers share: the common options, logging, the event loop, signals, the
supervisor handshake, and serving until SIGTERM/SIGINT, then draining.

A server brings only what is its own: its other options, its apps and how their runners are set up,
what SIGHUP does (the router reloads its routing file) and what the drain begins with (the router's
/readyz turns 503). With `--workers N` (N > 1) the process supervises N workers that share the ports
(proxy/serving/workers.py); each runs `run_worker`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from aiohttp import web

from controlplane.config import ConfigError
from controlplane.config.address import ListenAddress, parse_listen
from proxy.serving.tasks import TaskPool
from proxy.serving.workers import (
    EXIT_CANNOT_LISTEN,
    EXIT_UNUSABLE,
    Supervision,
    signals_ready,
    stop_when_orphaned,
    supervise,
)

LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")
EVENT_LOOPS: Final = ("uvloop", "asyncio")
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"

Options = TypeVar("Options")


@dataclass(frozen=True, slots=True)
class ServingOptions:
    """The options every server takes: where it listens, its worker processes, drain, log level."""

    listen: ListenAddress
    workers: int
    drain_timeout_s: float
    log_level: str


def add_serving_arguments(parser: argparse.ArgumentParser, *, listen: str, drain_timeout_s: float) -> None:
    parser.add_argument("--listen", default=listen, help="HOST:PORT, [::1]:8080 for IPv6")
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the port")
    parser.add_argument("--drain-timeout", type=float, default=drain_timeout_s, dest="drain_timeout_s",
                        help="seconds SIGTERM waits for in-flight requests")
    parser.add_argument("--log-level", default="INFO", choices=LOG_LEVELS, help="the least severe log lines written")


def serving_options(parser: argparse.ArgumentParser, ns: argparse.Namespace) -> ServingOptions:
    """The shared options, checked (a bad one is a usage error: exit 2)."""
    listen = listen_address(parser, ns.listen)
    if ns.workers < 1:
        parser.error("--workers must be at least 1")
    return ServingOptions(listen, ns.workers, ns.drain_timeout_s, ns.log_level)


def listen_address(parser: argparse.ArgumentParser, text: str) -> ListenAddress:
    try:
        return parse_listen(text)
    except ValueError as exc:
        parser.error(str(exc))


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)


def start(serving: ServingOptions, run_worker: Callable[..., int], options: Options,
          supervision: Supervision | None = None) -> int:
    """A server's main(): one worker in this process, or a supervisor of `--workers` of them (which
    runs `supervision`, if any, and hands each worker what it attaches)."""
    configure_logging(serving.log_level)
    if serving.workers == 1:
        return run_worker(options, None)
    return supervise(serving.workers, run_worker, options, supervision)


def run_worker(serving: ServingOptions, serve: Callable[[], Coroutine[Any, Any, int]], log: logging.Logger, *,
               event_loop: str = "uvloop") -> int:
    """Run `serve()` (which builds the apps and calls serve_until_stopped) in a new event loop; an
    unusable routing file exits 2, a port that cannot be bound 3 (the supervisor restarts neither)."""
    configure_logging(serving.log_level)  # a spawned worker starts with no logging set up
    if event_loop == "uvloop":
        _install_uvloop()
    try:
        return asyncio.run(serve())
    except ConfigError as exc:
        for issue in exc.issues:
            log.error("%s", issue)
        log.error("the routing file is unusable; not starting")
        return EXIT_UNUSABLE
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        return EXIT_CANNOT_LISTEN


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# Given the runner's web.Server, what makes each connection's protocol (the server's own handler).
ProtocolFactory = Callable[[web.Server], Callable[[], asyncio.BaseProtocol]]


@dataclass(frozen=True, slots=True)
class Listener:
    """An app's runner (set up by the server, with its own handler settings) and where it listens;
    `protocol`, if set, makes each connection's handler instead of the runner's web.Server."""

    runner: web.AppRunner
    address: ListenAddress
    backlog: int = 128
    protocol: ProtocolFactory | None = None


class _ProtocolSite(web.TCPSite):
    """A TCPSite whose connections get the server's own protocol (TCPSite.start() with another factory)."""

    __slots__ = ("_protocol",)

    def __init__(self, runner: web.AppRunner, host: str, port: int, protocol: ProtocolFactory, **kwargs: Any) -> None:
        super().__init__(runner, host, port, **kwargs)
        self._protocol = protocol

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner, which stops it on cleanup
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._protocol(server), self._host, self._port, backlog=self._backlog, reuse_port=self._reuse_port)


def _site(listener: Listener, reuse_port: bool) -> web.TCPSite:
    host, port = listener.address.host, listener.address.port
    if listener.protocol is None:
        return web.TCPSite(listener.runner, host, port, reuse_port=reuse_port, backlog=listener.backlog)
    return _ProtocolSite(listener.runner, host, port, listener.protocol, reuse_port=reuse_port,
                         backlog=listener.backlog)


async def serve_until_stopped(
    serving: ServingOptions,
    listeners: Sequence[Listener],
    log: logging.Logger,
    *,
    listening: str,
    on_reload: Callable[[], None],
    on_drain: Callable[[], None] | None = None,
    supervisor_pid: int | None = None,
) -> int:
    """Listen, log `listening`, serve until SIGTERM/SIGINT (or the supervisor is gone), then drain:
    the listeners close first and in-flight requests get up to the drain timeout."""
    for listener in listeners:
        await listener.runner.setup()
    try:
        for listener in listeners:
            await _site(listener, serving.workers > 1).start()
    except OSError:
        for listener in listeners:
            await listener.runner.cleanup()
        raise
    log.info("%s", listening)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_reload)
    signals_ready()
    watch = TaskPool("process", limit=1)
    if supervisor_pid is not None:
        watch.spawn(stop_when_orphaned(supervisor_pid, stop), name="supervisor-watch")
    await stop.wait()
    log.info("draining: no new connections, waiting up to %.0fs for in-flight requests", serving.drain_timeout_s)
    if on_drain is not None:
        on_drain()
    started = time.monotonic()
    await watch.close(timeout_s=0)
    for listener in listeners:
        await listener.runner.cleanup()  # stops listening, then waits for in-flight handlers
    log.info("stopped after draining for %.1fs", time.monotonic() - started)
    return 0

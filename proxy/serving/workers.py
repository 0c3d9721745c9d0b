"""Worker processes sharing ports: a supervisor that forwards signals and restarts crashed workers.

Used by the router and by v2 (`--workers N`). Each worker binds the same ports with SO_REUSEPORT,
so the kernel spreads connections across cores. With several workers, Prometheus values live in
multiprocess files (PROMETHEUS_MULTIPROC_DIR) so that any worker's /metrics shows the totals.

A server may give its supervisor work of its own (a `Supervision`: the router reads its routing file
there, once for every worker). Its workers are then forked rather than spawned: they inherit the
supervisor's imports and what it prepared (a parsed routing snapshot) instead of doing it again,
which at 10,000 tenants was most of the router's start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import wait as wait_for_sentinels
from multiprocessing.process import BaseProcess
from typing import Any, Final, Protocol

# The README's exit-code table, which the control plane's ExitStatus also follows (a test compares them).
EXIT_UNUSABLE: Final = 2  # an unusable routing file or argument: restarting cannot help
EXIT_CANNOT_LISTEN: Final = 3  # something outside the input: a port another process holds

log = logging.getLogger("dualstack.workers")


FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def signals_ready() -> None:
    """Called by a worker once its signal handlers are installed: signals that arrived while it was
    starting (blocked by the supervisor, the mask inherited across exec) are delivered now."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)


async def stop_when_orphaned(supervisor_pid: int, stop: asyncio.Event) -> None:
    """A worker whose supervisor died (even by SIGKILL) drains and exits instead of lingering."""
    while os.getppid() == supervisor_pid:  # noqa: ASYNC110 - no event exists for "parent died"
        await asyncio.sleep(1.0)
    log.warning("supervisor %d is gone; draining and stopping", supervisor_pid)
    stop.set()


class Supervision(Protocol):
    """A server's own work in its supervisor, between waits for its workers.

    The supervisor serves no request, so `poll` may block (read and parse a file). Runs in the
    supervisor's only thread: its workers are forked, and a fork must not copy another thread's locks."""

    poll_interval_s: float

    def poll(self, *, forced: bool) -> None:
        """Every poll_interval_s, and at once on SIGHUP (`forced`), which then reaches no worker."""

    def attach(self) -> Any:
        """Just before a worker starts: what it is handed (the third argument of its target)."""

    def detach(self, attached: Any) -> None:
        """Once that worker has exited."""


def _exit_with(target: Callable[..., int], options: Any, supervisor_pid: int, *attached: Any) -> None:
    """A worker process's body: its exit code is the worker's own (2 and 3 stop the supervisor)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # prometheus_client picks its value store when imported: a forked worker imported it in the
        # supervisor before the supervisor chose the multiprocess folder, so it picks again here.
        from prometheus_client import values

        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    sys.exit(target(options, supervisor_pid, *attached))


def supervise(count: int, target: Callable[..., int], options: Any, supervision: Supervision | None = None) -> int:
    """Start `count` processes running `target(options, supervisor_pid)` (plus what `supervision`
    attaches to each), which share their ports with SO_REUSEPORT; forward SIGTERM/SIGINT, and SIGHUP
    unless `supervision` takes it; restart one that dies unexpectedly."""
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="dualstack-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    context: Any = multiprocessing.get_context("spawn" if supervision is None else "fork")
    workers: dict[BaseProcess, Any] = {}  # process -> what supervision attached to it
    stopping = False
    reload_requested = False
    restarts: list[float] = []
    # A signal handler only sets a flag: this pipe wakes the wait below, so SIGHUP is served at once.
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def start_one() -> None:
        attached = () if supervision is None else (supervision.attach(),)
        process = context.Process(target=_exit_with, args=(target, options, os.getpid(), *attached),
                                  name="dualstack-worker")
        # A SIGHUP reaching a worker before its handler exists would kill it (the default action):
        # the worker starts with these signals blocked and unblocks them in signals_ready().
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        workers[process] = attached

    def forward_signal(signum: int, _frame: object) -> None:
        nonlocal stopping, reload_requested
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        elif supervision is not None:  # SIGHUP: the supervision reloads, for every worker
            reload_requested = True
            with contextlib.suppress(BlockingIOError):
                os.write(wake_write, b"\0")
            return
        for process in workers:
            if process.pid is not None and process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward_signal)
    try:
        for _ in range(count):
            start_one()
        exit_code = 0
        interval_s = 1.0 if supervision is None else supervision.poll_interval_s
        next_poll = time.monotonic() + interval_s
        while workers:
            wait_for_sentinels([*(p.sentinel for p in workers), wake_read],
                               timeout=max(0.0, next_poll - time.monotonic()))
            with contextlib.suppress(BlockingIOError):
                os.read(wake_read, 4096)
            if supervision is not None and not stopping and (reload_requested or time.monotonic() >= next_poll):
                forced, reload_requested = reload_requested, False
                supervision.poll(forced=forced)
                next_poll = time.monotonic() + interval_s
            elif time.monotonic() >= next_poll:
                next_poll = time.monotonic() + interval_s
            for process in [p for p in workers if not p.is_alive()]:
                attached = workers.pop(process)
                process.join()
                if supervision is not None:
                    supervision.detach(*attached)
                code = process.exitcode or 0
                _mark_dead(process.pid)
                if stopping:
                    continue
                if code in (EXIT_UNUSABLE, EXIT_CANNOT_LISTEN):  # restarting cannot help
                    log.error("worker %s exited with code %s; stopping", process.pid, code)
                    stopping = True
                    exit_code = code
                    forward_signal(signal.SIGTERM, None)
                    continue
                now = time.monotonic()
                restarts[:] = [t for t in restarts if now - t < 60] + [now]
                if len(restarts) > 5 * count:
                    log.error("workers keep dying (%d restarts in 60s); stopping", len(restarts))
                    stopping = True
                    exit_code = 1
                    forward_signal(signal.SIGTERM, None)
                    continue
                log.warning("worker %s exited with code %s; starting another", process.pid, code)
                start_one()
        return exit_code
    finally:
        os.close(wake_read)
        os.close(wake_write)
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


def _mark_dead(pid: int | None) -> None:
    """A worker is gone: its live gauges go, and its counters join the folder's archives."""
    if pid is None:
        return
    from prometheus_client import multiprocess

    from proxy.serving.metric_files import fold_dead_worker

    with contextlib.suppress(Exception):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
    try:
        fold_dead_worker(os.environ["PROMETHEUS_MULTIPROC_DIR"], pid)
    except Exception:  # its files stay and still count: only the folder's size suffers
        log.exception("cannot fold the metrics files of worker %d into the archives", pid)

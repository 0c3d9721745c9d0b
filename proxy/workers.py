"""Worker processes sharing ports: a supervisor that forwards signals and restarts crashed workers.

Used by the router and by v2 (`--workers N`). Each worker binds the same ports with SO_REUSEPORT,
so the kernel spreads connections across cores. With several workers, Prometheus values live in
multiprocess files (PROMETHEUS_MULTIPROC_DIR) so that any worker's /metrics shows the totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import wait as wait_for_sentinels
from multiprocessing.process import BaseProcess
from typing import Any

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


def supervise(count: int, target: Callable[[Any, int], int], options: Any) -> int:
    """Start `count` processes running `target(options, supervisor_pid)`, which share their ports
    with SO_REUSEPORT; forward SIGHUP/SIGTERM/SIGINT; restart one that dies unexpectedly."""
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="dualstack-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    context = multiprocessing.get_context("spawn")
    workers: list[BaseProcess] = []
    stopping = False
    restarts: list[float] = []

    def start_one() -> BaseProcess:
        process = context.Process(target=target, args=(options, os.getpid()), name="dualstack-worker")
        # A SIGHUP reaching a worker before its handler exists would kill it (the default action):
        # the worker starts with these signals blocked and unblocks them in signals_ready().
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        return process

    def forward_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for process in workers:
            if process.pid is not None and process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward_signal)
    try:
        workers.extend(start_one() for _ in range(count))
        exit_code = 0
        while workers:
            wait_for_sentinels([p.sentinel for p in workers], timeout=1.0)
            for process in [p for p in workers if not p.is_alive()]:
                workers.remove(process)
                process.join()
                code = process.exitcode or 0
                _mark_dead(process.pid)
                if stopping:
                    continue
                if code == 2:  # unusable config or bad arguments: restarting cannot help
                    log.error("worker %s exited with code 2; stopping", process.pid)
                    stopping = True
                    exit_code = 2
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
                workers.append(start_one())
        return exit_code
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


def _mark_dead(pid: int | None) -> None:
    if pid is None:
        return
    from prometheus_client import multiprocess

    with contextlib.suppress(Exception):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]

"""Owned background work: named, bounded, counted, and cancelled on shutdown.

No bare `asyncio.create_task` elsewhere in the router: every task is spawned through a TaskPool
that keeps its reference (so it cannot be garbage-collected mid-flight), caps how many run at once
and reports what it refused to start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

CANCEL_ATTEMPTS = 5
CANCEL_WAIT_S = 0.5


class TaskPool:
    def __init__(self, name: str, limit: int, on_drop: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.limit = limit
        self._tasks: set[asyncio.Task[Any]] = set()
        self._on_drop = on_drop
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> bool:
        """Start `coro` unless the pool is full or closed; False (and the drop counted) if not."""
        if self._closed or len(self._tasks) >= self.limit:
            coro.close()
            if self._on_drop is not None:
                self._on_drop("closed" if self._closed else "full")
            return False
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return True

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def cancel(self) -> None:
        """Refuse new work and cancel what runs, without waiting (for owners that close synchronously)."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Refuse new work, give running tasks `timeout_s` to finish, then cancel the rest."""
        self._closed = True
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for attempt in range(CANCEL_ATTEMPTS):
            if not pending:
                return
            # Cancelled again each round: asyncio.wait_for on Python 3.11 can swallow a cancellation
            # that lands as its inner wait completes, and a loop around it then runs on for ever.
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=CANCEL_WAIT_S * (attempt + 1))
        if pending:
            log.error("%s: %d task(s) ignored cancellation and are left behind: %s", self.name, len(pending),
                      ", ".join(sorted(t.get_name() for t in pending)))

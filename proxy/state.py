"""The router's live state: the current routing table and the reload history.

Swapping `table` is the only mutation a reload makes; requests read it once and keep that
snapshot for their whole life.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping

from controlplane.config import ConfigFile, ConfigIssue, ReloadOutcome
from controlplane.config.locks import Lock
from proxy.metrics import ProxyMetrics
from proxy.routing import RoutingTable

log = logging.getLogger(__name__)


class RouterState:
    def __init__(
        self,
        config_file: ConfigFile,
        metrics: ProxyMetrics,
        on_swap: Callable[[RoutingTable], None] | None = None,
    ) -> None:
        self.config_file = config_file
        self.metrics = metrics
        self._on_swap = on_swap
        config = config_file.load_initial()
        self.table = RoutingTable(config, generation=1)
        self.locks: Mapping[str, Lock] = {}
        self.last_reload_ok = True
        self.last_reload_at_s = time.time()
        self.last_issues: tuple[ConfigIssue, ...] = ()
        self.draining = False
        self.reload_requested = asyncio.Event()
        metrics.config_loaded(1, self.last_reload_at_s)
        metrics.routes_changed(_serving(self.table), {})
        log.info("routing loaded from %s: %s", config.source, config.summary())

    def request_reload(self) -> None:
        """Ask the reload loop to re-read the file now (SIGHUP)."""
        self.reload_requested.set()

    def poll(self, *, force: bool = False) -> ReloadOutcome | None:
        outcome = self.config_file.poll(force=force)
        if outcome is not None:
            self.apply(outcome)
        return outcome

    def apply(self, outcome: ReloadOutcome) -> None:
        self.last_reload_ok = outcome.ok
        self.last_reload_at_s = outcome.at_s
        self.last_issues = outcome.issues
        if not outcome.ok or outcome.config is None:
            self.metrics.config_rejected(len(outcome.issues), outcome.at_s)
            log.error("routing file rejected; still serving generation %d from the last good version",
                      self.table.generation)
            for issue in outcome.issues:
                log.error("%s", issue)
            return
        previous = self.table
        self.table = RoutingTable(outcome.config, previous.generation + 1, self.locks)
        self.metrics.config_loaded(self.table.generation, outcome.at_s)
        self.metrics.routes_changed(_serving(self.table), _serving(previous))
        if self._on_swap is not None:
            self._on_swap(self.table)
        changed = sorted(
            slug for slug, route in self.table.routes.items()
            if (old := previous.routes.get(slug)) is None or old.backend != route.backend
        )
        removed = sorted(previous.routes.keys() - self.table.routes.keys())
        log.info("routing generation %d loaded: %s; changed: %s; removed: %s",
                 self.table.generation, outcome.config.summary(),
                 ", ".join(f"{s}->{self.table.routes[s].backend}" for s in changed) or "none",
                 ", ".join(removed) or "none")

    def apply_locks(self, locks: Mapping[str, Lock]) -> None:
        """New rollback locks from the state database: the same config, other effective routes."""
        if dict(locks) == dict(self.locks):
            return
        previous, self.locks = self.table, locks
        self.table = previous.with_locks(locks)
        self.metrics.routes_changed(_serving(self.table), _serving(previous))
        self.metrics.locks_active.set(sum(1 for r in self.table.routes.values() if r.override_reason))
        for slug, route in sorted(self.table.routes.items()):
            old = previous.routes.get(slug)
            if old is None or old.backend != route.backend:
                log.warning("tenant %s now served by %s (%s)", slug, route.backend,
                            route.override_reason or "the routing file again")
        if self._on_swap is not None:
            self._on_swap(self.table)

    async def watch(self, interval_s: float) -> None:
        """Poll the file every `interval_s`, and at once when a reload is requested."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.reload_requested.wait(), timeout=interval_s)
            forced = self.reload_requested.is_set()
            self.reload_requested.clear()
            self.poll(force=forced)


def _serving(table: RoutingTable) -> dict[str, str]:
    return {slug: route.backend for slug, route in table.routes.items()}

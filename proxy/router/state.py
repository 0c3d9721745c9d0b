"""The router's live state: the current routing table and the reload history.

Swapping `table` is the only mutation a reload makes; requests read it once and keep that
snapshot for their whole life. Reading and parsing the file happen off the loop, so a huge or slow
file never stalls the requests the loop is serving: a router of one process polls the file itself,
in a thread (`watch`); a router's workers take what their supervisor parsed once for all of them
(`follow`, proxy/router/handout.py). The watcher survives any failure of a reload and records when
it last ran, so a stuck or dead watcher is visible (/routes, /metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Final

from controlplane.config import ConfigFile, ConfigIssue, ReloadOutcome, RoutingConfig
from controlplane.config.delta import TenantDelta
from controlplane.config.locks import Lock
from proxy.router.handout import NOTICE, Handout, Published, load_delta, load_published
from proxy.router.metrics import ProxyMetrics
from proxy.router.routing import RoutingTable

log = logging.getLogger(__name__)

LOGGED_ISSUES: Final = 20  # a rejected file's problems logged one by one; the rest are counted


class RouterState:
    def __init__(
        self,
        config_file: ConfigFile,
        metrics: ProxyMetrics,
        on_swap: Callable[[RoutingTable], None] | None = None,
        *,
        published: Published | None = None,
    ) -> None:
        """Loads `config_file`, unless `published` (a worker's supervisor parsed it) is given."""
        self.config_file = config_file
        self.metrics = metrics
        self._on_swap = on_swap
        if published is None:
            started = time.perf_counter()
            config = config_file.load_initial()
            published = Published(1, 1, config, True, (), time.time(), os.getpid(), time.perf_counter() - started)
        config = published.config
        self.table = RoutingTable(config, published.generation)
        self.published = published  # the latest outcome taken (who parsed it, and when)
        # A worker under a supervisor (set by `follow`): the supervisor alone reads the file.
        self.supervisor_pid: int | None = None
        self._taken = asyncio.Event()  # set (and replaced) each time an outcome of the supervisor is taken
        self.locks: Mapping[str, Lock] = {}
        self.last_reload_ok = published.ok
        self.last_reload_at_s = published.at_s
        self.last_issues: tuple[ConfigIssue, ...] = published.issues
        self.draining = False
        self.reload_requested = asyncio.Event()
        self.reloading_since_s: float | None = None  # a reload in progress (in its thread) since
        self.watch_last_run_s = time.time()
        metrics.config_loaded(published.generation, self.last_reload_at_s)
        if not published.ok:
            metrics.config_rejected(len(published.issues), published.at_s)
        metrics.config_watch_last_run.set(self.watch_last_run_s)
        metrics.shadowed_tenants(self.table.shadowed)
        metrics.routes_changed(_serving(self.table), {})
        log.info("routing loaded from %s: %s", config.source, config.summary())

    def request_reload(self) -> None:
        """Ask the reload loop to re-read the file now (SIGHUP)."""
        self.reload_requested.set()

    async def refresh(self, *, timeout_s: float) -> None:
        """Make the table match the routing file as it is now. A router of one process re-reads it; a
        worker under a supervisor asks the supervisor to (SIGHUP: it parses the file for every worker)
        and waits, at most `timeout_s`, for the outcome it publishes. A worker never reads the file
        itself: a table of its own would have a generation the supervisor's next one does not follow."""
        if self.supervisor_pid is None:
            await self.reload(force=True)
            return
        asked = self.published.seq
        try:
            os.kill(self.supervisor_pid, signal.SIGHUP)
        except OSError as exc:  # the supervisor is gone: stop_when_orphaned drains this worker
            log.error("cannot ask the router's supervisor (pid %d) for a fresh routing snapshot: %s",
                      self.supervisor_pid, exc)
            return
        try:
            async with asyncio.timeout(timeout_s):
                while self.published.seq <= asked:
                    await self._taken.wait()
        except TimeoutError:
            log.error("the router's supervisor (pid %d) published no fresh routing snapshot within %.1f s; this "
                      "worker keeps generation %d", self.supervisor_pid, timeout_s, self.table.generation)

    async def reload(self, *, force: bool = False) -> ReloadOutcome | None:
        """Re-read the file if it changed (or `force`) and swap the table if it is good."""
        self.reloading_since_s = time.time()
        try:
            outcome, swap = await asyncio.to_thread(self._poll, force)
            if outcome is not None:
                self.apply(outcome, swap)
            return outcome
        except Exception as exc:  # whatever it was, the next poll and SIGHUP must still be served
            log.exception("routing reload failed")
            issue = ConfigIssue(str(self.config_file.path), 0, "", f"reload failed: {type(exc).__name__}: {exc}")
            outcome = ReloadOutcome(False, None, (issue,), time.time())
            self.apply(outcome)
            return outcome
        finally:
            self.reloading_since_s = None

    def _poll(self, force: bool) -> tuple[ReloadOutcome | None, Swap | None]:
        """In a thread: read and parse the file if it changed, and work out the swap."""
        outcome = self.config_file.poll(force=force)
        if outcome is None or outcome.config is None:
            return outcome, None
        return outcome, self.prepare(outcome.config, self.table.generation + 1)

    def prepare(self, config: RoutingConfig, generation: int) -> Swap:
        """The table for `config` and what swapping it in changes. O(tenants): run it in a thread;
        `apply` redoes it only if the table or the locks changed meanwhile."""
        return Swap.between(self.table, RoutingTable(config, generation, self.locks))

    def apply(self, outcome: ReloadOutcome, swap: Swap | None = None) -> None:
        """Take one reload outcome: a new snapshot (with its `swap`, prepared off the loop), or a
        rejection that keeps the current one. On the loop, costs grow with the tenants that changed."""
        self.last_reload_ok = outcome.ok
        self.last_reload_at_s = outcome.at_s
        self.last_issues = outcome.issues
        if not outcome.ok or outcome.config is None:
            self.metrics.config_rejected(len(outcome.issues), outcome.at_s)
            log.error("routing file rejected (%d problem(s)); still serving generation %d from the last good "
                      "version", len(outcome.issues), self.table.generation)
            for issue in outcome.issues[:LOGGED_ISSUES]:  # a pasted-twice file has thousands: the loop logs a few
                log.error("%s", issue)
            if len(outcome.issues) > LOGGED_ISSUES:
                log.error("... and %d more: `dualstack validate %s` lists them all, and /routes shows them",
                          len(outcome.issues) - LOGGED_ISSUES, self.config_file.path)
            return
        if swap is None or swap.previous is not self.table or swap.table.locks is not self.locks:
            swap = self.prepare(outcome.config, self.table.generation + 1 if swap is None else swap.table.generation)
        previous, self.table = self.table, swap.table
        self.metrics.config_loaded(self.table.generation, outcome.at_s)
        self.metrics.shadowed_tenants(swap.shadowed)
        self.metrics.routes_changed(swap.serving, swap.gone)
        self._report_refused(previous)
        if self._on_swap is not None:
            self._on_swap(self.table)
        log.info("routing generation %d loaded: %s; changed: %s; removed: %s",
                 self.table.generation, swap.summary,
                 ", ".join(f"{s}->{b}" for s, b in sorted(swap.serving.items())) or "none",
                 ", ".join(sorted(swap.gone)) or "none")

    def _report_refused(self, previous: RoutingTable) -> None:
        self.metrics.locks_refused.set(len(self.table.refused_locks))
        for slug, why in sorted(self.table.refused_locks.items()):
            if previous.refused_locks.get(slug) != why:
                log.error("refusing the rollback lock on tenant %s: %s; it stays on %s", slug, why,
                          self.table.routes[slug].backend)

    def apply_locks(self, locks: Mapping[str, Lock]) -> None:
        """New rollback locks from the state database: the same config, other effective routes."""
        if dict(locks) == dict(self.locks):
            return
        previous, self.locks = self.table, locks
        self.table = previous.with_locks(locks)
        self.metrics.routes_changed(*_changes(previous, self.table))
        self.metrics.locks_active.set(sum(1 for r in self.table.routes.values() if r.override_reason))
        self._report_refused(previous)
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
            await self.reload(force=forced)
            self.watcher_ran(time.time())

    def watcher_ran(self, at_s: float) -> None:
        self.watch_last_run_s = at_s
        self.metrics.config_watch_last_run.set(at_s)

    def take(self, published: Published, swap: Swap | None) -> None:
        """The supervisor's latest outcome: its snapshot if newer than ours (`swap`, prepared for it
        off the loop), then its rejection, if it was one."""
        if published.seq <= self.published.seq:
            return
        taken, self.published = self.published, published
        # Newer than the last snapshot taken from the supervisor (not than the table's own number,
        # which a reload of this process's own could have moved on).
        if published.generation > taken.generation:
            if swap is None or swap.table.generation != published.generation:
                swap = self.prepare(published.config, published.generation)
            self.apply(ReloadOutcome(True, published.config, (), published.at_s), swap)
        if not published.ok:
            self.apply(ReloadOutcome(False, None, published.issues, published.at_s))
        self._taken.set()
        self._taken = asyncio.Event()

    def _load(self, handout: Handout, announced: int) -> tuple[Published, Swap | None]:
        """In a thread: the published outcome, and the swap to its snapshot if it is newer than ours.
        Patched from the snapshot we hold when the supervisor's delta starts from it (only tenants
        changed): tens of milliseconds of CPU less, each of which held the GIL the loop needs."""
        base = self.published
        try:
            news = load_delta(handout.delta_path)
        except (OSError, TypeError, pickle.UnpicklingError) as exc:  # the full outcome says it all
            log.warning("cannot read the routing delta the supervisor published (%s); taking the full snapshot", exc)
        else:
            if news.seq >= announced and news.patches(base):
                assert news.delta is not None  # patches() says so
                published = news.applied_to(base)
                if published.generation <= base.generation:
                    return published, None
                return published, self.prepare_delta(base.config, published.config, published.generation,
                                                     news.delta)
        published = load_published(handout.outcome_path)
        if published.generation <= self.published.generation:
            return published, None
        return published, self.prepare(published.config, published.generation)

    def prepare_delta(self, base: RoutingConfig, config: RoutingConfig, generation: int, delta: TenantDelta) -> Swap:
        """As `prepare`, for `config`, which is `base` changed by `delta`: when the table is `base`'s,
        only the routes of the delta's tenants are worked out again (else the whole table is)."""
        previous = self.table
        if previous.config is not base:  # the table moved on meanwhile: `apply` checks it again too
            return self.prepare(config, generation)
        slugs = delta.slugs()
        return Swap.for_tenants(previous, previous.with_tenants(config, generation, slugs), slugs)

    async def follow(self, handout: Handout) -> None:
        """Take what the supervisor publishes (proxy/router/handout.py) until cancelled: its notices
        are read on the loop (16 bytes each), the outcome they announce in a thread."""
        self.supervisor_pid = handout.supervisor_pid
        loop = asyncio.get_running_loop()
        fd = handout.notices_fd
        os.set_blocking(fd, False)
        pending = bytearray()
        announced = self.published.seq
        news = asyncio.Event()

        def readable() -> None:
            nonlocal announced
            try:
                data = os.read(fd, 64 * NOTICE.size)
            except BlockingIOError:
                return
            if not data:  # no writer left, the supervisor included: stop_when_orphaned drains this worker
                loop.remove_reader(fd)
                return
            pending.extend(data)
            while len(pending) >= NOTICE.size:
                ran_at_s, seq = NOTICE.unpack_from(pending)
                del pending[:NOTICE.size]
                self.watcher_ran(ran_at_s)
                announced = max(announced, seq)
            if announced > self.published.seq:
                news.set()

        loop.add_reader(fd, readable)
        try:
            while True:
                await news.wait()
                news.clear()
                self.reloading_since_s = time.time()
                try:
                    self.take(*await asyncio.to_thread(self._load, handout, announced))
                except Exception:  # the next notice tries again; the current table keeps serving
                    log.exception("cannot take the routing snapshot the supervisor published")
                finally:
                    self.reloading_since_s = None
        finally:
            loop.remove_reader(fd)


@dataclass(frozen=True, slots=True)
class Swap:
    """A new table and what taking it changes, worked out off the loop: per-tenant work on the loop
    is then only for the tenants that changed (at 10,000 tenants, walking them all on each reload
    stalled every request the worker held)."""

    previous: RoutingTable
    table: RoutingTable
    serving: dict[str, str]  # tenant -> backend, for the tenants new or now served elsewhere
    gone: dict[str, str]  # tenant -> backend it had, for the tenants removed
    shadowed: frozenset[str]
    summary: str

    @classmethod
    def between(cls, previous: RoutingTable, table: RoutingTable) -> Swap:
        serving, gone = _changes(previous, table)
        return cls(previous, table, serving, gone, table.shadowed, table.config.summary())

    @classmethod
    def for_tenants(cls, previous: RoutingTable, table: RoutingTable, slugs: Collection[str]) -> Swap:
        """As `between`, when only the tenants `slugs` may differ between the two tables."""
        serving: dict[str, str] = {}
        gone: dict[str, str] = {}
        for slug in slugs:
            old, new = previous.routes.get(slug), table.routes.get(slug)
            if new is not None and (old is None or old.backend != new.backend):
                serving[slug] = new.backend
            elif new is None and old is not None:
                gone[slug] = old.backend
        return cls(previous, table, serving, gone, table.shadowed, table.config.summary())


def _serving(table: RoutingTable) -> dict[str, str]:
    return {slug: route.backend for slug, route in table.routes.items()}


def _changes(previous: RoutingTable, table: RoutingTable) -> tuple[dict[str, str], dict[str, str]]:
    """(tenants new or now served elsewhere, tenants gone): the metric series to touch on a swap.

    Only these: creating every tenant's series again on each reload cost seconds on the event loop
    with thousands of tenants."""
    old, new = _serving(previous), _serving(table)
    changed = {slug: backend for slug, backend in new.items() if old.get(slug) != backend}
    gone = {slug: backend for slug, backend in old.items() if slug not in new}
    return changed, gone

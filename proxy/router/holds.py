"""Write holds in one router worker: while a cutover holds a tenant, its writes (anything but GET,
HEAD and OPTIONS: payment creation, notifications, admin writes) wait here before they are routed;
reads flow. On release the waiting writes go on in arrival order, each routed by the routing table
of that moment.

A worker confirms a hold (proxy/router/hold_watch.py) only once the tenant's writes already in
flight when it began holding (they passed before the hold and are being forwarded) have finished:
the final sync then races none of them. Until then the hold is "draining"; a write slower than the
hold's bound keeps the worker from confirming, and the cutover aborts with nothing flipped.

A hold ends when the cutover releases it (hold_watch.py sees that) or on this worker's own clock at
its hold_s, so a cutover that dies cannot freeze a tenant. Ending is a task of its own, so whoever
asked for it may be cancelled (the poll's timeout) without stranding the held writes: they go on in
its `finally`. Before they go on, the worker makes its table match the routing file (the router
re-reads it; a worker under a supervisor asks the supervisor, which parses it for every worker): a
release waits until the table serves the backend the hold was released to, at most until the hold's
bound, and counts as released_elsewhere if it still did not. The cutover flips the file only before
its own bound has passed, and each worker's bound starts later than the cutover's, so a write
released by expiry still sees the flip if there was one.

Bounded: at most MAX_HELD_PER_TENANT writes wait per tenant; the next ones are answered 503 with
Retry-After (Midtrans retries, a funnel shows "try again").
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from controlplane.config.model import Backend
from controlplane.state.holds import MAX_HOLD_S
from proxy.router.metrics import ProxyMetrics
from proxy.router.state import RouterState

log = logging.getLogger(__name__)

READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_HELD_PER_TENANT: Final = 1000
# How long ending a hold by expiry waits for a fresh table (a supervisor parsing 10,000 tenants: ~1 s).
REFRESH_ON_EXPIRY_S: Final = 3.0
# Between two attempts at a table that serves the backend a hold was released to.
RELEASE_RETRY_S: Final = 0.05
Ending = Literal["released", "expired"]
Outcome = Literal["released", "expired", "released_elsewhere"]


class HoldFull(Exception):
    """The tenant's hold already has MAX_HELD_PER_TENANT writes waiting."""


@dataclass(slots=True)
class TenantHold:
    hold_id: int
    tenant: str
    hold_s: float
    since_s: float  # time.monotonic() when this worker began to hold
    waiters: collections.deque[asyncio.Future[None]] = field(default_factory=collections.deque)
    timer: asyncio.TimerHandle | None = None
    ending: asyncio.Task[None] | None = None
    draining: bool = False  # begun, but writes that passed before it are still being forwarded


class WriteHolds:
    def __init__(self, state: RouterState, metrics: ProxyMetrics) -> None:
        self.state = state
        self.metrics = metrics
        self._holds: dict[str, TenantHold] = {}
        self._ids: dict[int, TenantHold] = {}
        self._in_flight: collections.Counter[str] = collections.Counter()  # tenant -> writes being forwarded
        self._endings: set[asyncio.Task[None]] = set()
        self.on_drained: Callable[[], None] | None = None  # a draining hold may now be confirmed
        self.ended: set[int] = set()  # holds this worker ended while they may still be open: never begun again

    def holds(self, tenant: str) -> bool:
        return tenant in self._holds

    def holding(self, hold_id: int) -> bool:
        return hold_id in self._ids

    @property
    def hold_ids(self) -> list[int]:
        return list(self._ids)

    async def wait(self, tenant: str) -> None:
        """Wait until the tenant's hold ends (at once when there is none). Raises HoldFull."""
        hold = self._holds.get(tenant)
        if hold is None:
            return
        if len(hold.waiters) >= MAX_HELD_PER_TENANT:
            self.metrics.held_requests.labels(tenant, "refused").inc()
            raise HoldFull(tenant)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        hold.waiters.append(waiter)
        self.metrics.held_requests_waiting.inc()
        started = time.monotonic()
        try:
            await waiter
        except asyncio.CancelledError:  # the client went away while held
            if waiter in hold.waiters:
                hold.waiters.remove(waiter)
            self.metrics.held_requests.labels(tenant, "gone").inc()
            raise
        finally:
            self.metrics.held_requests_waiting.dec()
        self.metrics.held_requests.labels(tenant, "released").inc()
        self.metrics.held_request_wait.observe(time.monotonic() - started)

    def enter(self, tenant: str) -> None:
        """A write of the tenant passed the hold check and is being forwarded (call `leave` when done).
        No await may come between the check and this: a hold begun in between would miss it."""
        self._in_flight[tenant] += 1

    def leave(self, tenant: str) -> None:
        left = self._in_flight[tenant] - 1
        if left > 0:
            self._in_flight[tenant] = left
            return
        del self._in_flight[tenant]
        hold = self._holds.get(tenant)
        if hold is not None and hold.draining:
            hold.draining = False
            self.metrics.write_holds_draining.dec()
            log.info("writes of tenant %s in flight when hold %d began have finished: it may be confirmed",
                     tenant, hold.hold_id)
            if self.on_drained is not None:
                self.on_drained()

    def in_flight(self, tenant: str) -> int:
        return self._in_flight.get(tenant, 0)

    def confirmable(self, hold_id: int) -> bool:
        """Whether this worker holds the hold and no write that passed before it is still being
        forwarded: only then may it confirm (the final sync must race nothing)."""
        hold = self._ids.get(hold_id)
        if hold is None or hold.ending is not None:
            return False
        if self.in_flight(hold.tenant) == 0:
            return True
        if not hold.draining:
            hold.draining = True
            self.metrics.write_holds_draining.inc()
            log.warning("hold %d of tenant %s waits for %d write(s) in flight before it is confirmed",
                        hold_id, hold.tenant, self.in_flight(hold.tenant))
        return False

    def begin(self, hold_id: int, tenant: str, hold_s: float) -> None:
        """Hold the tenant's writes from now on, for at most `hold_s` of this worker's clock."""
        if hold_id in self._ids:
            return
        previous = self._holds.get(tenant)
        hold = TenantHold(hold_id, tenant, min(max(hold_s, 0.0), MAX_HOLD_S), time.monotonic())
        if previous is not None:  # a newer hold of the same tenant takes the older one's waiters
            self._forget(previous)
            # An ending still under way releases only what it kept; these now wait for the newer hold.
            hold.waiters, previous.waiters = previous.waiters, collections.deque()
        self._holds[tenant], self._ids[hold_id] = hold, hold
        hold.timer = asyncio.get_running_loop().call_later(hold.hold_s, self._expire, hold)
        self.metrics.write_holds_active.inc()
        log.warning("holding the writes of tenant %s (hold %d, at most %g s)", tenant, hold_id, hold.hold_s)

    def _expire(self, hold: TenantHold) -> None:
        self.finish(hold.hold_id, None, "expired")

    def finish(self, hold_id: int, release_to: Backend | None, ending: Ending) -> asyncio.Task[None] | None:
        """Start ending the hold (once) as a task of its own; the task, or None if not held here."""
        hold = self._ids.get(hold_id)
        if hold is None:
            return None
        if hold.ending is None:
            self.ended.add(hold_id)
            if hold.timer is not None:
                hold.timer.cancel()
            task = asyncio.get_running_loop().create_task(self._end(hold, release_to, ending),
                                                          name=f"end-hold-{hold_id}")
            self._endings.add(task)
            task.add_done_callback(self._ended)
            hold.ending = task
        return hold.ending

    async def end(self, hold_id: int, release_to: Backend | None, ending: Ending) -> None:
        """End the hold and wait until its writes went on. Cancelling this wait does not stop the ending."""
        task = self.finish(hold_id, release_to, ending)
        if task is not None:
            await asyncio.shield(task)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._endings.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("ending a write hold failed (its writes went on)", exc_info=task.exception())

    async def _end(self, hold: TenantHold, release_to: Backend | None, ending: Ending) -> None:
        """Let the held writes go on, in arrival order, once the table matches the routing file; in
        a `finally`, so nothing (a failure, a cancellation) can keep them held."""
        outcome: Outcome = ending
        try:
            outcome = await self._match_table(hold, release_to, ending)
        finally:
            route = self.state.table.route_for(hold.tenant)
            now = route.backend if route is not None else "nowhere (not in the routing file)"
            self._forget(hold)
            waiting = len(hold.waiters)
            for waiter in hold.waiters:  # resumed in this order: arrival order
                if not waiter.done():
                    waiter.set_result(None)
            held_s = time.monotonic() - hold.since_s
            self.metrics.write_holds.labels(hold.tenant, outcome).inc()
            self.metrics.write_hold_duration.observe(held_s)
            log.log(logging.INFO if outcome == "released" else logging.WARNING,
                    "writes of tenant %s %s after %.3f s (hold %d%s): %d held writes go on to %s", hold.tenant,
                    outcome, held_s, hold.hold_id, f", released to {release_to}" if release_to else "", waiting, now)

    async def _match_table(self, hold: TenantHold, release_to: Backend | None, ending: Ending) -> Outcome:
        """Make the table match the routing file: after an expiry, once (the file says where the tenant
        is now); after a release, until it serves `release_to` or the hold's bound has passed."""
        if release_to is None:
            await self.state.refresh(timeout_s=REFRESH_ON_EXPIRY_S)
            return ending
        deadline = hold.since_s + hold.hold_s
        while not self._serves(hold.tenant, release_to):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                route = self.state.table.route_for(hold.tenant)
                log.error("hold %d of tenant %s was released to %s, but this worker's routing table still sends "
                          "it to %s after the hold's %g s: its held writes go there. Check the routing file and "
                          "the router's reloads (/routes, dualstack_config_generation)", hold.hold_id, hold.tenant,
                          release_to, route.backend if route is not None else "nowhere", hold.hold_s)
                return "released_elsewhere"
            await self.state.refresh(timeout_s=remaining)
            if not self._serves(hold.tenant, release_to):
                await asyncio.sleep(min(RELEASE_RETRY_S, max(deadline - time.monotonic(), 0.0)))
        return ending

    def _serves(self, tenant: str, backend: Backend) -> bool:
        route = self.state.table.route_for(tenant)
        return route is not None and route.backend == backend

    def forget_ended(self, keep: set[int]) -> None:
        """Holds no longer open in the state database cannot come back: stop remembering them."""
        self.ended &= keep

    def _forget(self, hold: TenantHold) -> None:
        if hold.draining:
            hold.draining = False
            self.metrics.write_holds_draining.dec()
        if self._holds.get(hold.tenant) is hold:
            del self._holds[hold.tenant]
            self.metrics.write_holds_active.dec()
        self._ids.pop(hold.hold_id, None)

    async def close(self) -> None:
        """Shutting down: nothing stays held (the writes go on by the table of the moment)."""
        for hold in list(self._ids.values()):
            await self.end(hold.hold_id, None, "expired")
        if self._endings:
            await asyncio.wait(list(self._endings), timeout=REFRESH_ON_EXPIRY_S)

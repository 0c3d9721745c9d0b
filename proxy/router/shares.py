"""Each tenant's share of one upstream's connections, so a noisy or stuck tenant degrades alone.

Fifty slow uploads to one tenant, or its requests hanging on its payment provider, would otherwise
hold every connection of the backend the tenants share, and every other tenant would wait out the
pool and get a 504. A tenant holds at most `limits.tenant_pool_share` of `pool_size` connections
(at least one), and at most as many of its requests wait for one of them; past that it is refused
at once (503 tenant_busy), and the other tenants never queue behind it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

from proxy.http1.pool import UpstreamError


class TenantShare:
    """The slots of one tenant on one upstream: how many it holds and who of it waits for one."""

    __slots__ = ("_waiters", "held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def enter(self, timeout_s: float) -> None:
        """Take a slot, waiting up to `timeout_s`; raises UpstreamError("tenant_busy") if none comes."""
        if self.held < self.limit:
            self.held += 1
            return
        if len(self._waiters) >= self.limit:
            raise UpstreamError("tenant_busy", f"is busy with {self.held} of this tenant's requests "
                                f"and {len(self._waiters)} more waiting (its share: {self.limit})")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except TimeoutError:
            self._forget(waiter)
            raise UpstreamError("tenant_busy", f"kept all {self.limit} of this tenant's connections busy") from None
        except asyncio.CancelledError:
            self._forget(waiter)
            raise

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done() and not waiter.cancelled():
            self.leave()  # the slot was handed over just as we gave up: pass it on
            return
        waiter.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def leave(self) -> None:
        """Give the slot back: to the tenant's next waiter, else free."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: `held` is unchanged
                return
        self.held -= 1

"""Throttled guessing: failed attempts per (tenant, client) and per tenant, as token buckets.

An admin token is 24 random bytes, so guessing it is hopeless; still, an endpoint that answers
1,000 wrong guesses in a second invites scanners and hides them in the logs. Each failure takes a
token from the client's bucket and from the tenant's (a distributed guesser drains the tenant's);
with either bucket empty the attempt is answered 429 before the token is even compared. Buckets
refill continuously, so a locked-out admin waits seconds, not an hour. Memory is bounded: the
oldest buckets are forgotten first.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final

MAX_BUCKETS: Final = 10_000


class _Buckets:
    def __init__(self, capacity: float, window_s: float, clock: Callable[[], float]) -> None:
        self._capacity = capacity
        self._rate = capacity / window_s  # tokens per second
        self._clock = clock
        self._state: OrderedDict[tuple[str, ...], tuple[float, float]] = OrderedDict()

    def _tokens(self, key: tuple[str, ...], now: float) -> float:
        tokens, at = self._state.get(key, (self._capacity, now))
        return min(self._capacity, tokens + (now - at) * self._rate)

    def wait_s(self, key: tuple[str, ...]) -> float:
        """Seconds until one attempt is allowed again (0 when it is allowed now)."""
        tokens = self._tokens(key, self._clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self._rate

    def take(self, key: tuple[str, ...]) -> bool:
        """Take one token; True when that emptied the bucket."""
        now = self._clock()
        tokens = self._tokens(key, now)
        self._state[key] = (max(tokens - 1, 0.0), now)
        self._state.move_to_end(key)
        while len(self._state) > MAX_BUCKETS:
            self._state.popitem(last=False)
        return tokens >= 1 > tokens - 1


class FailureThrottle:
    def __init__(self, *, per_client: int = 10, per_tenant: int = 100, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clients = _Buckets(per_client, window_s, clock)
        self._tenants = _Buckets(per_tenant, window_s, clock)

    def wait_s(self, tenant: str, client: str) -> float:
        return max(self._clients.wait_s((tenant, client)), self._tenants.wait_s((tenant,)))

    def failed(self, tenant: str, client: str) -> bool:
        """Count a failed attempt; True when it is the one that starts throttling."""
        client_emptied = self._clients.take((tenant, client))
        tenant_emptied = self._tenants.take((tenant,))
        return client_emptied or tenant_emptied


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Callable[[str], bool]) -> str:
    """The address a request came from: the peer, or, behind trusted proxies (nginx, the router),
    the right-most X-Forwarded-For entry that is not one of them. Entries left of it were written by
    the client and prove nothing."""
    if peer is None or not trusted(peer):
        return peer or "unknown"
    hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # not an address: the chain cannot be read, so the proxy is the client
        if not trusted(hop):
            return hop
    return hops[0] if hops else peer

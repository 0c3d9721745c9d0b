"""The router's writer of the order ids it saw v1 create or answer for (into the state database).

A 2xx of v1 to `POST /payment/create` is an order v1 created: v1 answers `{success, paymentUrl,
token}` without the id, so the id is the request body's `orderId`. A 2xx of v1 to
`GET /orders/{id}/status` is an order v1 holds. The cutover preflight looks the recent ones up in
the v1 store it is given (controlplane/state/v1_orders_seen.py): a store that lacks them is not the
one v1 writes.

The request path only appends the raw body or path to a list (bounded: at most SAMPLE_PER_MINUTE
per tenant and MAX_PENDING in all; the rest is counted in `dropped`); ids are parsed and checked
when the batch is written, once a second, off the request path (proxy/router/state_writes.py).
"""

from __future__ import annotations

import collections
import json
import re
import time
from typing import Final, Literal

from controlplane.state import v1_orders_seen
from controlplane.state.schema import query
from proxy.router.state_writes import last_write, state_pool, write_periodically

SAMPLE_PER_MINUTE: Final = 20  # per tenant: bounds the rows one tenant's traffic can add
MAX_PENDING: Final = 2000
MAX_CREATE_BODY: Final = 8192  # a create's body is a few hundred bytes; a larger one is not sampled
_STATUS_PATH: Final = re.compile(r"/orders/([^/]{1,64})/status")
Seen = Literal["created", "answered"]


def seen_as(method: str, path: str, status: int) -> Seen | None:
    """What v1's answer says about an order: it created one, answered for one, or neither. Cheap."""
    if not 200 <= status < 300:
        return None
    if method == "POST" and path == "/payment/create":
        return "created"
    if method == "GET" and path.startswith("/orders/") and path.endswith("/status"):
        return "answered"
    return None


def order_id(seen: Seen, raw: bytes | str) -> str | None:
    """The id in a create's body or a status path; None when there is no well-formed one."""
    if seen == "created":
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None
        candidate = body.get("orderId") if isinstance(body, dict) else None
    else:
        match = _STATUS_PATH.fullmatch(str(raw))
        candidate = match.group(1) if match else None
    if isinstance(candidate, str) and v1_orders_seen.ORDER_ID_RE.fullmatch(candidate):
        return candidate
    return None


class V1OrdersSeen:
    def __init__(self, database_url: str, schema: str, *, flush_interval_s: float = 1.0) -> None:
        self._pool = state_pool(database_url)
        self._insert = query(v1_orders_seen.INSERT, schema)
        self._interval_s = flush_interval_s
        self._pending: list[tuple[str, Seen, bytes | str]] = []
        self._minute = 0
        self._this_minute: collections.Counter[str] = collections.Counter()
        self.dropped = 0

    def wants(self, tenant: str) -> bool:
        """Whether one more of the tenant's orders is sampled now (the caller reads a body only then)."""
        minute = int(time.time() // 60)
        if minute != self._minute:
            self._minute, self._this_minute = minute, collections.Counter()
        if self._this_minute[tenant] >= SAMPLE_PER_MINUTE or len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            return False
        return True

    def add(self, tenant: str, seen: Seen, raw: bytes | str) -> None:
        """A create's body (bytes) or a status path (str), after `wants` said yes."""
        self._this_minute[tenant] += 1
        self._pending.append((tenant, seen, raw))

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def run(self) -> None:
        await write_periodically("v1 orders seen", self._interval_s, self.flush)

    async def close(self) -> None:
        await last_write("v1 orders seen", self._pool, self.flush, lambda: len(self._pending))

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        rows: dict[tuple[str, str], Seen] = {}
        for tenant, seen, raw in pending:
            found = order_id(seen, raw)
            if found is not None and rows.get((tenant, found)) != "created":  # the more telling sighting
                rows[(tenant, found)] = seen
        if not rows:
            return
        try:
            async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
                await cursor.executemany(self._insert, [(tenant, found, seen) for (tenant, found), seen in
                                                        rows.items()])
        except BaseException:
            room = MAX_PENDING - len(self._pending)
            self._pending[:0] = pending[:room]
            self.dropped += max(0, len(pending) - room)
            raise

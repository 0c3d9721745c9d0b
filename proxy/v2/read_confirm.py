"""A status read that knows the buyer paid: ask Get Status for a recent pending order.

Midtrans often sends the buyer back to the thank-you page before its notification arrives; the
page reads the order's status once and sends a buyer whose order is still pending away. So a
status read of a pending order that is recent and has a Snap transaction asks Midtrans (the same
Get Status the webhook confirms with) and applies the answer through the webhook's own path
(settle.apply_report: status rules, amount check, payment_events with outcome `confirmed_on_read`,
the confirmation email) before answering.

Bounded: the read waits at most `timeout_s` for Midtrans, then answers what the database says.
Rationed per worker: one ask per order every `order_interval_s` (the page may poll), and a token
bucket per tenant. Dry runs (mirrored reads) never ask and never apply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from controlplane.midtrans_answer import StatusUnavailable
from proxy.v2.db import PaymentsDB, TenantRecord
from proxy.v2.gateway import StatusSource
from proxy.v2.metrics import V2Metrics
from proxy.v2.outbox import Outbox
from proxy.v2.settings import ReadConfirmation
from proxy.v2.settle import amount_matches, apply_report, lock_order

log = logging.getLogger(__name__)

READ_OUTCOME: Final = "confirmed_on_read"
_MAX_ORDERS: Final = 10_000  # orders remembered for the per-order interval; the oldest go first

Result = Literal["applied", "unchanged", "amount_mismatch", "unknown_order", "unavailable", "timeout",
                 "rationed"]
RESULTS: Final[tuple[Result, ...]] = ("applied", "unchanged", "amount_mismatch", "unknown_order", "unavailable",
                                      "timeout", "rationed")


class ReadRation:
    """Whether a status read may ask Midtrans now: per order at most once an interval, per tenant a
    token bucket. In memory, per worker, bounded."""

    def __init__(self, policy: ReadConfirmation, clock: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._clock = clock
        self._asked: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, tenant: str, order_id: str) -> bool:
        now = self._clock()
        last = self._asked.get((tenant, order_id))
        if last is not None and now - last < self._policy.order_interval_s:
            return False
        tokens, at = self._buckets.get(tenant, (float(self._policy.tenant_burst), now))
        tokens = min(float(self._policy.tenant_burst), tokens + (now - at) * self._policy.tenant_per_s)
        if tokens < 1:
            self._buckets[tenant] = (tokens, now)
            return False
        self._buckets[tenant] = (tokens - 1, now)
        self._asked[(tenant, order_id)] = now
        self._asked.move_to_end((tenant, order_id))
        while len(self._asked) > _MAX_ORDERS:
            self._asked.popitem(last=False)
        return True


@dataclass(frozen=True, slots=True)
class ReadConfirmer:
    policy: ReadConfirmation
    ration: ReadRation
    db: PaymentsDB
    status: StatusSource
    outbox: Outbox
    metrics: V2Metrics

    async def confirm(self, tenant: TenantRecord, order_id: str) -> Result:
        """Ask Midtrans about this pending order and apply its answer; never longer than timeout_s
        waiting for Midtrans. The caller reads the order again when the result is `applied`."""
        result = await self._confirm(tenant, order_id)
        self.metrics.read_confirmations.labels(tenant.slug, result).inc()
        return result

    async def _confirm(self, tenant: TenantRecord, order_id: str) -> Result:
        if not self.ration.allow(tenant.slug, order_id):
            return "rationed"
        try:
            async with asyncio.timeout(self.policy.timeout_s):
                report = await self.status.transaction_status(
                    order_id, server_key=tenant.server_key.reveal(), environment=tenant.environment)
        except TimeoutError:
            log.info("tenant %s order %s: Get Status took over %.1f s on a status read; answered from the "
                     "database", tenant.slug, order_id, self.policy.timeout_s)
            return "timeout"
        except StatusUnavailable as exc:
            log.info("tenant %s order %s: Get Status on a status read: %s", tenant.slug, order_id, exc.reason)
            return "unavailable"
        if report is None:
            return "unknown_order"
        payload = {"order_id": order_id, **report.recorded()}
        async with self.db.tenant_tx(tenant.id) as conn:
            order = await lock_order(conn, order_id)
            if order is None:
                return "unknown_order"
            transition, wrote_outbox = await apply_report(
                conn, tenant, payload, order, report, dedupe_key=None, confirmation=report.recorded(),
                outcome=READ_OUTCOME, only_changes=True)
            matches = amount_matches(report.gross_amount, order["gross_amount"])
        if wrote_outbox:
            self.outbox.notify(tenant.id)  # after commit
        if transition.new_status is None:
            return "unchanged"
        if not matches:
            return "amount_mismatch"
        log.info("tenant %s order %s: %s on a status read, before Midtrans' notification",
                 tenant.slug, order_id, transition.reason)
        return "applied"

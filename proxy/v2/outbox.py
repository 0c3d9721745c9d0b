"""The notification outbox: emails written in the payment's transaction, sent after commit.

The webhook inserts one row per (order, template) in the same transaction that marks the order
paid, then wakes the worker; nothing slow happens while Midtrans waits for its answer. The worker
also sweeps every tenant periodically, so rows left by a crash are sent after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Final, Protocol

from proxy.v2.db import PaymentsDB

log = logging.getLogger(__name__)

MAX_ATTEMPTS: Final = 5


@dataclass(frozen=True, slots=True)
class Email:
    template: str
    order_id: str
    to_address: str
    to_name: str
    from_address: str | None
    reply_to: str | None
    amount: int


class EmailSender(Protocol):
    async def send(self, email: Email) -> None: ...


class LogEmailSender:
    """Records that an email would go out, without the address (no SMTP relay is configured)."""

    async def send(self, email: Email) -> None:
        log.info("email %s for order %s handed to the log sender (no SMTP relay configured)",
                 email.template, email.order_id)


class Outbox:
    def __init__(self, db: PaymentsDB, sender: EmailSender, *, sweep_interval_s: float = 30.0) -> None:
        self._db = db
        self._sender = sender
        self._sweep_interval_s = sweep_interval_s
        self._pending: set[uuid.UUID] = set()
        self._wake = asyncio.Event()
        self.sent = 0

    def notify(self, tenant_id: uuid.UUID) -> None:
        """Called after a commit that wrote outbox rows."""
        self._pending.add(tenant_id)
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._sweep_interval_s)
                tenants, self._pending = self._pending, set()
            except TimeoutError:
                tenants = set(await self._db.active_tenant_ids())
            self._wake.clear()
            for tenant_id in tenants:
                try:
                    await self.drain(tenant_id)
                except Exception:
                    log.exception("outbox: sending for tenant %s failed; will retry", tenant_id)

    async def drain(self, tenant_id: uuid.UUID) -> int:
        sent = 0
        async with self._db.tenant_tx(tenant_id) as conn:
            cursor = await conn.execute(
                "SELECT x.id, x.order_id, x.template, o.email, o.customer_name, o.gross_amount, "
                "t.email_from, t.email_reply_to "
                "FROM notification_outbox x JOIN orders o ON o.tenant_id = x.tenant_id AND o.order_id = x.order_id "
                "JOIN tenants t ON t.id = x.tenant_id "
                "WHERE x.status = 'pending' ORDER BY x.id LIMIT 100 FOR UPDATE OF x SKIP LOCKED")
            for row in await cursor.fetchall():
                email = Email(row["template"], row["order_id"], row["email"], row["customer_name"],
                              row["email_from"], row["email_reply_to"], row["gross_amount"])
                try:
                    await self._sender.send(email)
                except Exception as exc:
                    await conn.execute(
                        "UPDATE notification_outbox SET attempts = attempts + 1, last_error = %s, "
                        "status = CASE WHEN attempts + 1 >= %s THEN 'failed' ELSE 'pending' END WHERE id = %s",
                        (type(exc).__name__, MAX_ATTEMPTS, row["id"]))
                    continue
                await conn.execute("UPDATE notification_outbox SET status = 'sent', sent_at = now(), "
                                   "attempts = attempts + 1 WHERE id = %s", (row["id"],))
                sent += 1
        self.sent += sent
        return sent

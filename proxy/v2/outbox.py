"""The notification outbox: emails written in the order's transaction, sent after commit, once.

Writers (`queue_email`) insert one row per (order, template) in the transaction that creates the
payment link or marks the order paid; the table's UNIQUE (tenant_id, order_id, template) makes a
second insert a no-op, whatever retried it. Nothing slow happens while a client or Midtrans waits.

The worker (`Outbox.run`, owned by the app's TaskPool) sends them, in every v2 worker process:
1. Claim: in a short transaction, due rows are taken FOR UPDATE SKIP LOCKED and set to 'sending'
   with a claim id and a lease (next_attempt_at = now + lease), then COMMITTED. Another worker
   skips them (locked during the claim, 'sending' after it), so no two workers send one row.
2. Send, outside any transaction: no row lock and no database connection is held while a relay is
   slow; the sender is bounded by its timeout, well inside the lease.
3. Mark: 'sent', or back to 'pending' at a later next_attempt_at (temporary: 4xx, refused or lost
   connection, timeout), or 'dead' with the reason (permanent: 5xx to the message; or
   max_attempts reached). Only the claimer may mark (claim id), so a row reclaimed after an
   expired lease is never marked twice.
Sending inside the claiming transaction would keep the row locked and a pooled connection busy
for the whole SMTP conversation (a hung relay starves the webhooks of connections) and would still
send twice if the commit after a successful send failed. With the lease, the one window left is a
worker dying between the relay's 250 and the mark: its rows are sent again when the lease ends
(at-least-once there, with the same Message-ID), never lost.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import psycopg

from proxy.v2.db import PaymentsDB
from proxy.v2.email_templates import EmailTemplates, TemplateProblem, order_view
from proxy.v2.metrics import V2Metrics
from proxy.v2.relays import MailTenant, Relay, mail_tenants
from proxy.v2.settings import DeliveryPolicy

log = logging.getLogger(__name__)

MAX_REASON_CHARS: Final = 500


@dataclass(frozen=True, slots=True)
class Email:
    """One outbox row, rendered: everything the sender puts on the wire."""

    outbox_id: int
    tenant: str
    template: str
    order_id: str
    relay: Relay
    from_name: str
    from_address: str
    to_name: str
    to_address: str
    reply_to: str | None
    language: str
    subject: str
    text: str
    html: str


class SendFailure(Exception):
    """A send that did not go through. `permanent`: retrying cannot help (dead-letter it);
    `relay_down`: the relay itself failed, so the tenant's other emails wait instead of each
    trying in turn."""

    def __init__(self, reason: str, *, permanent: bool = False, relay_down: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason[:MAX_REASON_CHARS]
        self.permanent = permanent
        self.relay_down = relay_down


class EmailSender(Protocol):
    async def send(self, email: Email) -> None:
        """Deliver `email` to its relay, or raise SendFailure."""


async def queue_email(conn: psycopg.AsyncConnection[Any], tenant_id: uuid.UUID, order_id: str, template: str) -> bool:
    """In the caller's transaction: one row for (order, template), unless it exists. An order v1
    created (migrated here) gets a 'skipped' row: v1 sends its emails. True if a row to send was
    written (the caller calls Outbox.notify after its commit)."""
    cursor = await conn.execute(
        "INSERT INTO notification_outbox (tenant_id, order_id, template, status, last_error) "
        "SELECT tenant_id, order_id, %s, CASE WHEN origin = 'v1' THEN 'skipped' ELSE 'pending' END, "
        "CASE WHEN origin = 'v1' THEN 'order created on v1, which sends its emails' END "
        "FROM orders WHERE tenant_id = %s AND order_id = %s "
        "ON CONFLICT (tenant_id, order_id, template) DO NOTHING RETURNING status",
        (template, tenant_id, order_id))
    row = await cursor.fetchone()
    return row is not None and row["status"] == "pending"


_CLAIM: Final = """
UPDATE notification_outbox x SET status = 'sending', attempts = x.attempts + 1, claim_id = %(claim)s,
    next_attempt_at = now() + make_interval(secs => %(lease)s), updated_at = now()
FROM (SELECT id FROM notification_outbox WHERE status IN ('pending', 'sending') AND next_attempt_at <= now()
      ORDER BY next_attempt_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) due, orders o
WHERE x.id = due.id AND o.tenant_id = x.tenant_id AND o.order_id = x.order_id
RETURNING x.id, x.order_id, x.template, x.attempts, o.email, o.customer_name, o.gross_amount,
    o.payment_method, o.redirect_url, o.created_at, o.paid_at
"""


class Outbox:
    def __init__(self, db: PaymentsDB, sender: EmailSender, templates: EmailTemplates, metrics: V2Metrics, *,
                 policy: DeliveryPolicy, environ: Mapping[str, str], base_domain: str) -> None:
        self._db = db
        self._sender = sender
        self._templates = templates
        self._metrics = metrics
        self._policy = policy
        self._environ = environ
        self._base_domain = base_domain
        self._pending: set[uuid.UUID] = set()
        self._wake = asyncio.Event()
        self._between_sweeps = asyncio.Event()  # set while run() waits with nothing notified
        self._problems: dict[str, str | None] = {}  # what was last said about each tenant's relay

    def notify(self, tenant_id: uuid.UUID) -> None:
        """Called after a commit that wrote outbox rows: this worker sends them now."""
        self._pending.add(tenant_id)
        self._between_sweeps.clear()
        self._wake.set()

    async def run(self) -> None:
        woken = False
        while True:
            try:
                await self.sweep(only=self._take_pending() if woken else None)
            except Exception:
                log.exception("outbox: the sweep failed; the next one retries")
            if not self._wake.is_set():
                self._between_sweeps.set()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._policy.sweep_interval_s)
                woken = True
            except TimeoutError:
                woken = False
            self._between_sweeps.clear()

    async def idle(self) -> None:
        """Return once this worker's run() is between sweeps with no notify waiting for it (the tests
        that drive sweeps themselves wait for it, so the worker's own sweep cannot interleave)."""
        await self._between_sweeps.wait()

    def _take_pending(self) -> set[uuid.UUID]:
        self._wake.clear()
        tenants, self._pending = self._pending, set()
        return tenants

    async def sweep(self, only: set[uuid.UUID] | None = None) -> int:
        """Send what is due for every tenant (or those in `only`); refresh the backlog gauges."""
        tenants = await mail_tenants(self._db, self._environ)
        self._report(tenants)
        chosen = [t for t in tenants if only is None or t.id in only]
        limit = asyncio.Semaphore(self._policy.tenant_concurrency)

        async def one(tenant: MailTenant) -> int:
            async with limit:
                sent = await self.drain(tenant)
                await self._refresh_gauges(tenant)
                return sent

        return sum(await asyncio.gather(*(one(t) for t in chosen)))

    def _report(self, tenants: list[MailTenant]) -> None:
        """A log line per tenant whose emails cannot go out, at start-up and whenever that changes."""
        for tenant in tenants:
            self._metrics.tenant_seen(tenant.slug, ready=tenant.problem is None)
            if tenant.slug in self._problems and self._problems[tenant.slug] == tenant.problem:
                continue
            if tenant.problem is not None:
                log.warning("tenant %s: emails cannot be sent: %s; they wait in the outbox", tenant.slug,
                            tenant.problem)
            else:
                log.info("tenant %s: emails go through %s", tenant.slug, tenant.relay)
            self._problems[tenant.slug] = tenant.problem

    async def drain(self, tenant: MailTenant) -> int:
        if tenant.relay is None:
            return 0  # kept pending: reported by _report, the gauges and `dualstack tenant list`
        sent = 0
        while True:
            claim = uuid.uuid4()
            async with self._db.tenant_tx(tenant.id) as conn:
                cursor = await conn.execute(_CLAIM, {"claim": claim, "lease": self._policy.lease_s,
                                                     "limit": self._policy.batch})
                rows = await cursor.fetchall()
            all_sent = True
            for index, row in enumerate(rows):
                outcome = await self._send(tenant, tenant.relay, claim, row)
                sent += outcome == "sent"
                all_sent &= outcome == "sent"
                if outcome == "relay_down":
                    await self._release(tenant, claim, [r["id"] for r in rows[index + 1:]])
                    return sent
            if len(rows) < self._policy.batch or not all_sent:  # a failed row waits for its next attempt
                return sent

    async def _send(self, tenant: MailTenant, relay: Relay, claim: uuid.UUID, row: Mapping[str, Any]) -> str:
        try:
            email = self._render(tenant, relay, row)
            # The sender bounds itself by send_timeout_s; this is the backstop for one that does not.
            await asyncio.wait_for(self._sender.send(email), timeout=self._policy.send_timeout_s + 10.0)
        except TemplateProblem as exc:
            await self._dead(tenant, claim, row, str(exc))
            return "dead"
        except TimeoutError:
            return await self._failed(tenant, claim, row, SendFailure(
                f"no answer from relay {relay.host}:{relay.port} within {self._policy.send_timeout_s:g} s",
                relay_down=True))
        except SendFailure as failure:
            return await self._failed(tenant, claim, row, failure)
        await self._mark(tenant, claim, row["id"], "UPDATE notification_outbox SET status = 'sent', sent_at = now(), "
                         "last_error = NULL, claim_id = NULL, updated_at = now() WHERE id = %(id)s "
                         "AND claim_id = %(claim)s AND status = 'sending'", {})
        self._metrics.emails_sent.labels(tenant.slug, row["template"]).inc()
        return "sent"

    def _render(self, tenant: MailTenant, relay: Relay, row: Mapping[str, Any]) -> Email:
        site_url = f"https://{tenant.slug}.{self._base_domain}"
        view = order_view(shop_name=tenant.name, site_url=site_url, reply_to=tenant.email_reply_to,
                          language=tenant.language, row=row)
        rendered = self._templates.render(tenant.slug, tenant.language, str(row["template"]), view)
        assert tenant.email_from is not None  # a tenant without one has no relay (relays.mail_tenant)
        return Email(outbox_id=int(row["id"]), tenant=tenant.slug, template=str(row["template"]),
                     order_id=str(row["order_id"]), relay=relay, from_name=tenant.name,
                     from_address=tenant.email_from, to_name=str(row["customer_name"]),
                     to_address=str(row["email"]), reply_to=tenant.email_reply_to, language=tenant.language,
                     subject=rendered.subject, text=rendered.text, html=rendered.html)

    async def _failed(self, tenant: MailTenant, claim: uuid.UUID, row: Mapping[str, Any],
                      failure: SendFailure) -> str:
        self._metrics.emails_failed.labels(tenant.slug, "permanent" if failure.permanent else "temporary").inc()
        attempts = int(row["attempts"])
        if failure.permanent or attempts >= self._policy.max_attempts:
            reason = failure.reason if failure.permanent else f"gave up after {attempts} attempts: {failure.reason}"
            await self._dead(tenant, claim, row, reason)
        else:
            delay_s = min(self._policy.retry_max_s, self._policy.retry_base_s * 2 ** (attempts - 1))
            log.warning("tenant %s: email %s for order %s failed (attempt %d, retried in %g s): %s", tenant.slug,
                        row["template"], row["order_id"], attempts, delay_s, failure.reason)
            await self._mark(tenant, claim, row["id"], "UPDATE notification_outbox SET status = 'pending', "
                             "last_error = %(reason)s, claim_id = NULL, updated_at = now(), "
                             "next_attempt_at = now() + make_interval(secs => %(delay)s) "
                             "WHERE id = %(id)s AND claim_id = %(claim)s AND status = 'sending'",
                             {"reason": failure.reason, "delay": delay_s})
        return "relay_down" if failure.relay_down else "failed"

    async def _dead(self, tenant: MailTenant, claim: uuid.UUID, row: Mapping[str, Any], reason: str) -> None:
        log.error("tenant %s: email %s for order %s dead-lettered: %s (`dualstack outbox retry` sends it again)",
                  tenant.slug, row["template"], row["order_id"], reason)
        self._metrics.emails_dead_lettered.labels(tenant.slug).inc()
        await self._mark(tenant, claim, row["id"], "UPDATE notification_outbox SET status = 'dead', "
                         "last_error = %(reason)s, claim_id = NULL, updated_at = now() "
                         "WHERE id = %(id)s AND claim_id = %(claim)s AND status = 'sending'",
                         {"reason": reason[:MAX_REASON_CHARS]})

    async def _mark(self, tenant: MailTenant, claim: uuid.UUID, outbox_id: int, query: str,
                    params: dict[str, Any]) -> None:
        async with self._db.tenant_tx(tenant.id) as conn:
            cursor = await conn.execute(query, {**params, "id": outbox_id, "claim": claim})
        if cursor.rowcount == 0:  # the lease ran out mid-send and another worker took the row
            log.warning("tenant %s: outbox row %d was reclaimed by another worker while this one sent it",
                        tenant.slug, outbox_id)

    async def _release(self, tenant: MailTenant, claim: uuid.UUID, ids: list[int]) -> None:
        """Claimed rows not tried (their relay is down): pending again, the attempt not counted,
        due when the failed one is retried."""
        if not ids:
            return
        async with self._db.tenant_tx(tenant.id) as conn:
            await conn.execute(
                "UPDATE notification_outbox SET status = 'pending', attempts = attempts - 1, claim_id = NULL, "
                "next_attempt_at = now() + make_interval(secs => %s), updated_at = now() "
                "WHERE id = ANY(%s) AND claim_id = %s AND status = 'sending'",
                (self._policy.retry_base_s, ids, claim))

    async def _refresh_gauges(self, tenant: MailTenant) -> None:
        async with self._db.tenant_tx(tenant.id) as conn:
            cursor = await conn.execute(
                "SELECT count(*) FILTER (WHERE status IN ('pending', 'sending')) AS unsent, "
                "count(*) FILTER (WHERE status = 'dead') AS dead, "
                "coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status IN ('pending', 'sending'))), "
                "0) AS oldest_s FROM notification_outbox WHERE status IN ('pending', 'sending', 'dead')")
            row = await cursor.fetchone()
        assert row is not None
        self._metrics.backlog(tenant.slug, unsent=int(row["unsent"]), dead=int(row["dead"]),
                              oldest_unsent_s=float(row["oldest_s"]))

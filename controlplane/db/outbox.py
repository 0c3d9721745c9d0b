"""The notification outbox for ops (`dualstack outbox ...`), read through the admin URL as the owner.

The owner obeys row-level security too (FORCE), so every query runs in a transaction that names
the tenant, as v2's own do. Retrying never sends anything itself: it makes a row due again, and
v2's outbox worker sends it at its next sweep (within its sweep interval, 30 s by default).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from controlplane.db.layout import DEFAULT_LAYOUT, DatabaseLayout

STATUSES: Final = ("pending", "sending", "sent", "dead", "skipped")
RETRYABLE: Final = ("dead", "skipped", "pending")


class OutboxError(Exception):
    """An outbox command cannot be carried out; the message says why."""


@dataclass(frozen=True, slots=True)
class Retried:
    id: int
    order_id: str
    template: str
    was: str


class OutboxAdmin:
    def __init__(self, admin_url: str, layout: DatabaseLayout = DEFAULT_LAYOUT) -> None:
        self.admin_url = admin_url
        self.layout = layout

    @contextmanager
    def _tenant(self, slug: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        with psycopg.connect(self.admin_url, row_factory=dict_row) as conn, conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(self.layout.owner_role)))
            row = conn.execute(self.layout.render("SELECT id FROM {schema}.tenants WHERE slug = %s"),
                               (slug,)).fetchone()
            if row is None:
                raise OutboxError(f"no tenant '{slug}'; `dualstack tenant list` shows them")
            conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(row["id"]),))
            yield conn

    def entries(self, slug: str, statuses: list[str] | None = None, limit: int = 100) -> list[dict[str, Any]]:
        wanted = list(statuses or STATUSES)
        unknown = set(wanted) - set(STATUSES)
        if unknown:
            raise OutboxError(f"status must be one of {', '.join(STATUSES)}, not {', '.join(sorted(unknown))}")
        with self._tenant(slug) as conn:
            return conn.execute(self.layout.render(
                "SELECT id, order_id, template, status, attempts, created_at, next_attempt_at, sent_at, last_error "
                "FROM {schema}.notification_outbox WHERE status = ANY(%s) ORDER BY id DESC LIMIT %s"),
                (wanted, limit)).fetchall()

    def retry(self, slug: str, outbox_id: int | None = None, *, all_dead: bool = False) -> list[Retried]:
        """Make one row (dead, skipped, or pending and waiting) or every dead row due now, with a
        fresh count of attempts. A sent row is refused: a second email would be a duplicate."""
        if (outbox_id is None) == (not all_dead):
            raise OutboxError("name one outbox row by its id, or pass --all-dead")
        with self._tenant(slug) as conn:
            if outbox_id is not None:
                row = conn.execute(self.layout.render(
                    "SELECT status FROM {schema}.notification_outbox WHERE id = %s FOR UPDATE"),
                    (outbox_id,)).fetchone()
                if row is None:
                    raise OutboxError(f"tenant {slug} has no outbox row {outbox_id} (`dualstack outbox list`)")
                if row["status"] not in RETRYABLE:
                    why = ("it was sent; sending it again would be a duplicate" if row["status"] == "sent"
                           else "it is being sent right now")
                    raise OutboxError(f"outbox row {outbox_id} is {row['status']}: {why}")
                condition, params = "id = %s", [outbox_id]
            else:
                condition, params = "status = 'dead'", []
            rows = conn.execute(self.layout.render(
                "UPDATE {schema}.notification_outbox x SET status = 'pending', attempts = 0, claim_id = NULL, "
                "next_attempt_at = now(), updated_at = now() FROM (SELECT id, status AS was FROM "
                "{schema}.notification_outbox WHERE " + condition + " FOR UPDATE) old WHERE x.id = old.id "
                "RETURNING x.id, x.order_id, x.template, old.was"), params).fetchall()
        return [Retried(int(r["id"]), str(r["order_id"]), str(r["template"]), str(r["was"]))
                for r in sorted(rows, key=lambda r: int(r["id"]))]

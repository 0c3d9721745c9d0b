"""v1 applies any notification, signed or not: its `paid` (failed, refunded) is a claim. A claim that
would move money in v2 is carried only on evidence (controlplane/evidence.py: Midtrans' confirmation
recorded by v2, or Get Status asked now, outside any transaction)."""

from __future__ import annotations

from typing import Any

import psycopg

from controlplane.evidence import Claim, EvidenceCheck, Judgement, Progress, needs_evidence
from controlplane.migrate.rows import V1Order
from controlplane.order_status import MONEY_MOVING


def judge_claims(conn: psycopg.Connection[Any], tenant_id: Any, environment: str, valid: dict[str, V1Order],
                 evidence: EvidenceCheck, progress: Progress | None) -> list[Judgement]:
    """What v2 holds and recorded for the orders v1 says moved money (one short transaction bound to
    the tenant), then Midtrans' answers (outside any transaction: no lock waits on Midtrans)."""
    claimed = [o for o in valid.values() if o.status in MONEY_MOVING]
    if not claimed:
        return []
    ids = [o.order_id for o in claimed]
    with conn.transaction():
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))
        current = dict(conn.execute("SELECT order_id, payment_status FROM orders WHERE order_id = ANY(%s)",
                                    (ids,)).fetchall())
        claims = [Claim(o.order_id, o.status, o.amount, current.get(o.order_id)) for o in claimed
                  if needs_evidence(o.status, current.get(o.order_id))]
        if not claims:
            return []
        recorded: dict[str, list[dict[str, Any]]] = {}
        for order_id, confirmation in conn.execute(
                "SELECT order_id, confirmation FROM payment_events WHERE order_id = ANY(%s) "
                "AND confirmation ? 'transaction_status' ORDER BY id",
                ([c.order_id for c in claims],)):
            recorded.setdefault(order_id, []).append(confirmation)
        row = conn.execute("SELECT midtrans_server_key FROM tenant_secrets").fetchone()  # this tenant's only
    return evidence.judge(claims, recorded=recorded, server_key=row[0] if row else None, environment=environment,
                          progress=progress)

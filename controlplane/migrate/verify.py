"""After every pass, inside its transaction: every valid v1 order compared with what v2 holds, field
by field (amount, email, created_at, status, updated_at). Only v2 having moved on is not a difference:
a later status (a webhook paid it) or a later `updated_at`."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import psycopg

from controlplane.migrate.rows import V1Order


@dataclass
class Verification:
    differences: list[tuple[str, str]] = field(default_factory=list)  # (order id, what)
    kept_newer: int = 0  # v2 holds a later status than v1: precedence kept it


def verify(conn: psycopg.Connection[Any], valid: dict[str, V1Order], withheld: Collection[str]) -> Verification:
    """`withheld`: claims without evidence, which v2 holds below v1 on purpose (reported apart)."""
    stored = {r[0]: r[1:] for r in conn.execute(
        "SELECT order_id, gross_amount, email, created_at, payment_status, updated_at FROM orders")}
    out = Verification()
    for order_id, order in valid.items():
        have = stored.get(order_id)
        if have is None:
            out.differences.append((order_id, "missing in v2"))
            continue
        amount, email, created_at, status, updated_at = have
        differ = [name for name, same in (("amount", amount == order.amount),
                                          ("email", email.lower() == order.email.lower()),
                                          ("created_at", created_at == order.created_at)) if not same]
        if differ:
            out.differences.append((order_id, f"{', '.join(differ)} differ between v1 and v2"))
        elif updated_at < order.updated_at:
            out.differences.append((order_id, f"updated_at on v2 ({updated_at:%Y-%m-%d %H:%M:%S}) is before "
                                              f"v1's ({order.updated_at:%Y-%m-%d %H:%M:%S})"))
        elif status != order.status and order_id not in withheld:
            out.kept_newer += 1  # only the status differs: v2 moved on, precedence kept it
    return out

"""One v2 order as the reverse sync carries it, how v1 spells its status, and what to do with the
row v1 holds for it. Pure: both of v1's store generations go through the same rules.

The one status-precedence rule (controlplane/order_status.py) decides: v2's status is written only
where v1's could reach it by the moves the rule allows (pending -> refunded through paid, v1 having
missed the payment between two passes); a v1 row as final or more final (paid on v1 while v2
still says pending, a refund made on v1's admin page) stays as it is. A status v1 holds that is none
of its spellings (v1's admin page stores any string) is left alone and reported."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from controlplane.migrate.rows import STATUS_MAP
from controlplane.order_status import MONEY_MOVING, reachable

Spelling = Literal["lower", "upper"]
SPELLINGS: Final[tuple[Spelling, ...]] = ("lower", "upper")
# v1's own (pending/paid) and its later SQLite variant's (PENDING_PAYMENT/PAID/FAILED/EXPIRED).
_UPPER: Final = {"pending": "PENDING_PAYMENT", "paid": "PAID", "failed": "FAILED", "expired": "EXPIRED",
                 "refunded": "REFUNDED"}
V1_PAYMENT_METHOD: Final = "midtrans"  # what v1 writes in its NOT NULL payment_method, whatever the buyer chose


@dataclass(frozen=True, slots=True)
class V2Order:
    order_id: str
    name: str
    email: str
    phone: str
    amount: int  # whole rupiah
    status: str  # v2's spelling
    created_at: datetime  # aware
    updated_at: datetime


class Action(enum.StrEnum):
    INSERT = "insert"  # v1 does not hold the order
    UPDATE = "update"  # v2's status is a move the rule allows from v1's
    UNCHANGED = "unchanged"  # the same status
    KEPT_V1 = "kept_v1"  # v1's row is as final or more final: never regressed
    UNKNOWN_V1 = "unknown_v1"  # v1 holds a status that is none of its spellings: left alone, reported


def v1_spelling(status: str, spelling: Spelling) -> str:
    return _UPPER[status] if spelling == "upper" else status


def v1_status(raw: object) -> str | None:
    """v1's status in v2's spelling (None: not one of v1's spellings)."""
    return STATUS_MAP.get(str(raw or "").strip().lower())


def action_for(v1_raw: object | None, v2_status: str) -> Action:
    """What to do with the row v1 holds (`v1_raw` None: it holds none) for an order v2 holds in `v2_status`."""
    if v1_raw is None:
        return Action.INSERT
    current = v1_status(v1_raw)
    if current is None:
        return Action.UNKNOWN_V1
    if current == v2_status:
        return Action.UNCHANGED
    return Action.UPDATE if reachable(current, v2_status) else Action.KEPT_V1


def behind(v1_raw: object | None, v2_status: str) -> str | None:
    """Why v1's row is not at least as final as v2's (None: it is)."""
    if v1_raw is None:
        return "missing in v1"
    current = v1_status(v1_raw)
    if current is None:
        return f"v1's status {str(v1_raw)[:40]!r} is not one of its spellings (v2: {v2_status})"
    if reachable(current, v2_status):
        return f"v1 says {current}, v2 says {v2_status}"
    return None


def ahead(v1_raw: object | None, v2_status: str) -> str | None:
    """Why v1's row says money moved where v2 does not (None: it does not). v1 applies any
    notification it is sent, unverified, so such a row may be v1's word alone: the way back keeps it,
    and ops should know which orders customers will see so again."""
    current = v1_status(v1_raw) if v1_raw is not None else None
    if current is None or current == v2_status or current not in MONEY_MOVING or reachable(current, v2_status):
        return None
    return f"v1 says {current}, v2 says {v2_status}"


def sqlite_time(at: datetime) -> str:
    """As SQLite's CURRENT_TIMESTAMP writes it (UTC, to the second): what v1 and its readers expect."""
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S}"

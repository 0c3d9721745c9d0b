"""What a Midtrans transaction status means for an order, and which order status changes may be
made: the one status-precedence rule. Pure. v2 applies it to notifications and reads
(proxy/v2/status.py), the control plane to v1 syncs and reconcile reports, and the migration's
upserts carry it as SQL (`sql_may_move`).
"""

from __future__ import annotations

from typing import Final, Literal, get_args

OrderStatus = Literal["pending", "paid", "failed", "expired", "refunded"]

ORDER_STATUSES: Final[tuple[OrderStatus, ...]] = get_args(OrderStatus)

_SIMPLE: Final[dict[str, OrderStatus]] = {
    "settlement": "paid", "pending": "pending", "authorize": "pending", "deny": "failed",
    "cancel": "failed", "failure": "failed", "expire": "expired", "refund": "refunded",
    "partial_refund": "refunded", "chargeback": "refunded", "partial_chargeback": "refunded",
}
_CAPTURE: Final[dict[str | None, OrderStatus]] = {None: "paid", "": "paid", "accept": "paid",
                                                  "challenge": "pending", "deny": "failed"}

# Order statuses that move money: reached only on evidence (Midtrans' own answer, Get Status), never
# on a claim such as a notification's, whose signature does not cover transaction_status or fraud_status.
MONEY_MOVING: Final[frozenset[str]] = frozenset({"paid", "failed", "refunded"})

# Allowed moves between order statuses: out-of-order delivery never regresses an order (the same
# status again is a no-op, not a move).
ALLOWED_MOVES: Final[dict[str, frozenset[OrderStatus]]] = {
    "pending": frozenset({"paid", "failed", "expired"}),
    "failed": frozenset({"paid"}),
    "expired": frozenset({"paid"}),
    "paid": frozenset({"refunded"}),
    "refunded": frozenset(),
}


def order_status_for(transaction_status: str, fraud_status: str | None) -> OrderStatus | None:
    """The order status a Midtrans status means, or None for a value we do not know."""
    if transaction_status == "capture":
        return _CAPTURE.get(fraud_status)
    return _SIMPLE.get(transaction_status)


def may_move(current: str, target: str) -> bool:
    return target in ALLOWED_MOVES.get(current, frozenset())


def _closure() -> dict[str, frozenset[str]]:
    reach: dict[str, set[str]] = {status: set(targets) for status, targets in ALLOWED_MOVES.items()}
    changed = True
    while changed:  # five statuses: a few rounds
        changed = False
        for targets in reach.values():
            more = set().union(*(reach[t] for t in targets)) - targets
            if more:
                targets |= more
                changed = True
    return {status: frozenset(targets) for status, targets in reach.items()}


# Statuses an order may reach through allowed moves, one or more (pending -> refunded, through paid).
_REACHABLE: Final[dict[str, frozenset[str]]] = _closure()


def reachable(current: str, target: str) -> bool:
    """An order in `current` could come to `target` by allowed moves: `target` is further along.
    Copying one store's status into another behind it (the reverse sync) asks this, not may_move:
    a store that missed the payment between two passes still takes the refund."""
    return target in _REACHABLE.get(current, frozenset())


def sql_may_move(current: str, target: str) -> str:
    """ALLOWED_MOVES as a SQL condition on two column expressions (for a race-free upsert)."""
    cases = [f"({current} = '{source}' AND {target} IN ({', '.join(repr(t) for t in sorted(targets))}))"
             for source, targets in ALLOWED_MOVES.items() if targets]
    return "(" + " OR ".join(cases) + ")"

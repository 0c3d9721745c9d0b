"""Midtrans transaction status -> order status, and which changes out-of-order delivery may make.

Pure functions; the webhook handler records the returned Transition's outcome either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

OrderStatus = Literal["pending", "paid", "failed", "expired", "refunded"]

# What the funnel's thank-you page reads (v1's upper-case spelling).
V1_SPELLING: Final[dict[str, str]] = {
    "pending": "PENDING_PAYMENT", "paid": "PAID", "failed": "FAILED", "expired": "EXPIRED",
    "refunded": "REFUNDED",
}

_SIMPLE: Final[dict[str, OrderStatus]] = {
    "settlement": "paid", "pending": "pending", "authorize": "pending", "deny": "failed",
    "cancel": "failed", "failure": "failed", "expire": "expired", "refund": "refunded",
    "partial_refund": "refunded", "chargeback": "refunded", "partial_chargeback": "refunded",
}

# Allowed moves between order statuses (the same status again is a no-op, not a move).
_ALLOWED: Final[dict[str, frozenset[str]]] = {
    "pending": frozenset({"paid", "failed", "expired"}),
    "failed": frozenset({"paid"}),
    "expired": frozenset({"paid"}),
    "paid": frozenset({"refunded"}),
    "refunded": frozenset(),
}


def order_status_for(transaction_status: str, fraud_status: str | None) -> OrderStatus | None:
    """The order status a notification means, or None for a value we do not know."""
    if transaction_status == "capture":
        if fraud_status in (None, "", "accept"):
            return "paid"
        if fraud_status == "challenge":
            return "pending"
        if fraud_status == "deny":
            return "failed"
        return None
    return _SIMPLE.get(transaction_status)


Outcome = Literal["applied", "no_change", "ignored_precedence", "flagged_reversal", "unknown_status"]


@dataclass(frozen=True, slots=True)
class Transition:
    outcome: Outcome
    new_status: OrderStatus | None  # set when the order changes
    reason: str


def decide_transition(current: OrderStatus, transaction_status: str, fraud_status: str | None) -> Transition:
    target = order_status_for(transaction_status, fraud_status)
    if target is None:
        return Transition("unknown_status", None,
                          f"unknown transaction_status '{transaction_status}' (fraud '{fraud_status}')")
    if target == current:
        return Transition("no_change", None, f"already {current}")
    if current == "paid" and target == "failed" and transaction_status == "deny":
        # A documented reversal for some bank channels: applied, and flagged for a human.
        return Transition("flagged_reversal", "failed", "paid order denied afterwards by the bank")
    if target in _ALLOWED[current]:
        return Transition("applied", target, f"{current} -> {target}")
    return Transition("ignored_precedence", None,
                      f"{current} -> {target} is not allowed (late or out-of-order notification)")

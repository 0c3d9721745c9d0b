"""How v2 applies the one status-precedence rule (controlplane/order_status.py) to a notification:
the Transition a status makes of an order and whether it needs Midtrans' confirmation (which status
code a genuine notification carries for its status is proxy/serving/status_codes.py: the router
applies it too).

Pure functions; the webhook handler records the returned Transition's outcome either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from controlplane.order_status import MONEY_MOVING, OrderStatus, may_move, order_status_for

# What the funnel's thank-you page reads (v1's upper-case spelling).
V1_SPELLING: Final[dict[OrderStatus, str]] = {
    "pending": "PENDING_PAYMENT", "paid": "PAID", "failed": "FAILED", "expired": "EXPIRED",
    "refunded": "REFUNDED",
}


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
    if may_move(current, target):
        return Transition("applied", target, f"{current} -> {target}")
    return Transition("ignored_precedence", None,
                      f"{current} -> {target} is not allowed (late or out-of-order notification)")


def needs_confirmation(transition: Transition) -> bool:
    return transition.new_status in MONEY_MOVING

"""Midtrans' own word on a transaction, read one way by both planes: what a Get Status answer (or a
notification) says, and when an answer is no answer. Pure: the callers do the HTTP (v2's gateway
with aiohttp on a notification's path, the control plane's commands with urllib).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from controlplane.order_status import OrderStatus, order_status_for


class StatusUnavailable(Exception):
    """Midtrans could not be asked, or gave no usable answer; `reason` is safe to log and print."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class TransactionReport:
    """What a notification, or Get Status, says about one transaction (Midtrans' exact strings)."""

    transaction_status: str
    fraud_status: str | None
    status_code: str
    gross_amount: str
    transaction_id: str | None

    @classmethod
    def of(cls, fields: Mapping[str, Any]) -> TransactionReport:
        return cls(_text(fields.get("transaction_status")) or "", _text(fields.get("fraud_status")) or None,
                   _text(fields.get("status_code")) or "", _text(fields.get("gross_amount")) or "",
                   _text(fields.get("transaction_id")))

    @property
    def order_status(self) -> OrderStatus | None:
        return order_status_for(self.transaction_status, self.fraud_status)

    def amount_is(self, amount: int) -> bool:
        try:
            return Decimal(self.gross_amount) == Decimal(amount)
        except InvalidOperation:
            return False

    def agrees_with(self, other: TransactionReport) -> bool:
        """The same status of the same transaction (an absent transaction id is not a disagreement)."""
        same_id = self.transaction_id is None or other.transaction_id is None or \
            self.transaction_id == other.transaction_id
        return same_id and (self.transaction_status, self.fraud_status) == (other.transaction_status,
                                                                            other.fraud_status)

    def describe(self) -> str:
        fraud = f", fraud {self.fraud_status}" if self.fraud_status else ""
        return f"{self.transaction_status}{fraud}"

    def recorded(self) -> dict[str, str | None]:
        return {"transaction_status": self.transaction_status, "fraud_status": self.fraud_status,
                "status_code": self.status_code, "gross_amount": self.gross_amount,
                "transaction_id": self.transaction_id}


def read_status_answer(order_id: str, http_status: int, payload: Mapping[str, Any]) -> TransactionReport | None:
    """Midtrans' report on `order_id` from its Get Status answer (HTTP status, JSON object; {} for a
    body that is not one); None when Midtrans does not know the order.

    Raises StatusUnavailable for any other answer than this order's transaction status."""
    if http_status == 404 or payload.get("status_code") == "404":
        return None
    if http_status != 200:
        raise StatusUnavailable(f"Get Status answered HTTP {http_status}")
    if payload.get("order_id") != order_id or not isinstance(payload.get("transaction_status"), str):
        raise StatusUnavailable("Get Status answered without this order's transaction status")
    return TransactionReport.of(payload)

"""Validation of `POST /payment/create` bodies, with v1's error shape and messages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from controlplane.order_id import ORDER_ID_RE

_EMAIL_RE: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_AMOUNT: Final = 10**12


@dataclass(frozen=True, slots=True)
class CreateRequest:
    order_id: str
    amount: int
    email: str
    phone: str
    name: str
    payment_method: str | None


def _amount(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        amount = value
    elif isinstance(value, float) and value.is_integer():
        amount = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        amount = int(value.strip())
    else:
        return None
    return amount if 0 < amount <= MAX_AMOUNT else None


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    return value.strip() if isinstance(value, str) else ""


def validate_create(body: Any) -> tuple[CreateRequest | None, list[str]]:
    """The request, or v1's list of detail messages."""
    if not isinstance(body, dict):
        return None, ["Request body must be a JSON object"]
    details = []
    order_id = _text(body, "orderId")
    if not order_id:
        details.append("Order ID is required")
    elif not ORDER_ID_RE.fullmatch(order_id):
        details.append("Order ID must be at most 50 characters of letters, digits, '-', '_', '~' or '.'")
    amount = _amount(body.get("amount"))
    if amount is None:
        details.append("Valid amount is required")
    email = _text(body, "email")
    if not _EMAIL_RE.fullmatch(email):
        details.append("Valid email is required")
    phone = _text(body, "phone")
    if not phone:
        details.append("Phone number is required")
    name = _text(body, "name")
    if not name:
        details.append("Name is required")
    method = _text(body, "paymentMethod").lower() or None
    if details or amount is None:
        return None, details
    return CreateRequest(order_id, amount, email, phone, name, method), []


def validation_error_body(details: list[str]) -> dict[str, Any]:
    return {"error": "Validation Error", "message": "Invalid input data", "details": details}

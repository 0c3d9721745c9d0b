"""One v1 order as either store gives it (`RawOrder`), and what v2 can take of it (`V1Order`), or why
it is a bad row. Pure: both stores' rows go through the same rules.

Nothing is mended on the way: a blank name or phone, an amount with decimals (the PostgreSQL
generation's `NUMERIC(15,2)`), a time that cannot be read, is a bad row, reported by id and not
migrated. Both status spellings are accepted (pending/paid and PENDING_PAYMENT/PAID/...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, NamedTuple

from controlplane.order_id import ORDER_ID_RE

STATUS_MAP: Final = {
    "pending": "pending", "pending_payment": "pending", "paid": "paid", "settlement": "paid",
    "failed": "failed", "failure": "failed", "expired": "expired", "expire": "expired", "refunded": "refunded",
}
_EMAIL_RE: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_AMOUNT: Final = 9_999_999_999_999  # NUMERIC(15,2)'s whole part; far below v2's bigint
_MAX_TEXT: Final = 500  # a name, email or phone longer than this is not one


class RawOrder(NamedTuple):
    """A row of v1's `orders` (SQLite) or `payment_orders` (PostgreSQL), as the driver gives it."""
    order_id: Any
    name: Any
    email: Any
    phone: Any
    amount: Any
    method: Any
    status: Any
    created_at: Any  # text in SQLite (CURRENT_TIMESTAMP: UTC), an aware datetime from PostgreSQL
    updated_at: Any


@dataclass(frozen=True, slots=True)
class V1Order:
    order_id: str
    name: str
    email: str
    phone: str
    amount: int
    method: str | None
    status: str  # v2's spelling
    created_at: datetime  # aware
    updated_at: datetime


def order_from(raw: RawOrder) -> tuple[V1Order | None, str]:
    """(the order, "") or (None, why it is a bad row); `why` names no personal data."""
    order_id = str(raw.order_id)
    if not ORDER_ID_RE.fullmatch(order_id):
        return None, "order id v2 cannot hold (1-50 of A-Z a-z 0-9 . _ ~ -)"
    name, phone = str(raw.name or "").strip(), str(raw.phone or "").strip()
    for what, text in (("customer name", name), ("phone", phone)):
        if not text or len(text) > _MAX_TEXT:
            return None, f"blank {what}" if not text else f"{what} longer than {_MAX_TEXT} characters"
    if not isinstance(raw.email, str) or len(raw.email) > _MAX_TEXT or not _EMAIL_RE.fullmatch(raw.email.strip()):
        return None, f"invalid email {str(raw.email)[:3]}***"
    amount, why = _amount(raw.amount)
    if amount is None:
        return None, why
    status = str(raw.status or "").strip().lower()
    if status not in STATUS_MAP:
        return None, f"unknown status {raw.status!r:.40}"
    created_at = _time(raw.created_at)
    if created_at is None:
        return None, f"created_at {raw.created_at!r:.40} is not a time"
    updated_at = created_at if raw.updated_at is None else _time(raw.updated_at)
    if updated_at is None:
        return None, f"updated_at {raw.updated_at!r:.40} is not a time"
    method = None if raw.method is None else str(raw.method)[:_MAX_TEXT]
    return V1Order(order_id, name, raw.email.strip(), phone, amount, method, STATUS_MAP[status], created_at,
                   updated_at), ""


def _amount(value: Any) -> tuple[int | None, str]:
    """Whole rupiah, or why not. 99000.00 is 99000; 99000.50 is reported, never rounded."""
    if isinstance(value, (Decimal, float)) and Decimal(value).is_finite():
        if Decimal(value) != Decimal(value).to_integral_value():
            return None, f"amount {value} has decimals (v2 holds whole rupiah; not rounded)"
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None, f"amount {value!r:.40} is not a positive integer"
    if value > MAX_AMOUNT:
        return None, f"amount {value} is above {MAX_AMOUNT}"
    return value, ""


def _time(value: Any) -> datetime | None:
    """An aware time: PostgreSQL's as it is; SQLite's text (`CURRENT_TIMESTAMP` is UTC) as UTC when
    it names no offset."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

"""Midtrans notification signatures: sha512(order_id + status_code + gross_amount + server_key)."""

from __future__ import annotations

import hashlib
import hmac


def notification_signature(order_id: str, status_code: str, gross_amount: str, server_key: str) -> str:
    """Built from the exact strings received (gross_amount keeps its "10000.00" form)."""
    return hashlib.sha512(f"{order_id}{status_code}{gross_amount}{server_key}".encode()).hexdigest()


def signature_is_valid(payload: dict[str, object], server_key: str) -> bool:
    """Constant-time comparison; any missing or non-string field makes the signature invalid."""
    fields = [payload.get(k) for k in ("order_id", "status_code", "gross_amount", "signature_key")]
    if not all(isinstance(f, str) for f in fields):
        return False
    order_id, status_code, gross_amount, received = (str(f) for f in fields)
    expected = notification_signature(order_id, status_code, gross_amount, server_key)
    return hmac.compare_digest(expected.encode(), received.lower().encode())

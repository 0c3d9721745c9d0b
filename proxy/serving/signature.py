"""Midtrans notification signatures, as both servers check them: the router before it delivers a
notification to any backend, v2 before it believes one.

`sha512(order_id + status_code + gross_amount + server_key)` as lower-case hex, built from the exact
strings received (gross_amount keeps its "10000.00" form), compared in constant time. Pure: the key
is passed in by whoever holds it, and never kept, logged or put in an error.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Final

SIGNED_FIELDS: Final = ("order_id", "status_code", "gross_amount")


def notification_signature(order_id: str, status_code: str, gross_amount: str, server_key: str) -> str:
    return hashlib.sha512(f"{order_id}{status_code}{gross_amount}{server_key}".encode()).hexdigest()


def signature_matches(order_id: str, status_code: str, gross_amount: str, signature_key: str,
                      server_key: str) -> bool:
    """Constant-time; an empty key verifies nothing (anyone can sign with the empty string)."""
    if not server_key:
        return False
    expected = notification_signature(order_id, status_code, gross_amount, server_key)
    return hmac.compare_digest(expected.encode(), signature_key.lower().encode())


def signature_is_valid(payload: Mapping[str, object], server_key: str) -> bool:
    """The signature of a notification (or a Get Status answer); any missing or non-string field
    makes it invalid."""
    fields = [payload.get(k) for k in (*SIGNED_FIELDS, "signature_key")]
    if not all(isinstance(f, str) for f in fields):
        return False
    order_id, status_code, gross_amount, received = (str(f) for f in fields)
    return signature_matches(order_id, status_code, gross_amount, received, server_key)

"""PII and secret redaction for shadow samples: applied before anything is stored or reported.

By key name (email, phone, names, tokens, keys, signatures, URLs that embed tokens), at any depth;
and, under keys that say nothing, by value shape (e-mail addresses, phone numbers, long opaque
tokens), but only for shapes that cannot be an amount: v1 sends amounts as strings
(`"149000.00"`), and redacting one as a phone number hid the very difference a report is for.
Pure functions.
"""

from __future__ import annotations

import re
from typing import Any, Final

_SENSITIVE_KEYS: Final = frozenset({
    "email", "phone", "phonenumber", "mobile", "msisdn", "customeremail", "customerphone",
    "name", "customername", "firstname", "lastname", "fullname", "address", "token",
    "snaptoken", "key", "serverkey", "clientkey", "signaturekey", "secret", "password", "authorization",
    "paymenturl", "redirecturl", "cardnumber", "maskedcard", "vanumber", "billkey",
})
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# These two keep `$` on purpose: redaction errs towards hiding, so a value with a trailing newline
# (which `$` still matches) is redacted too; nothing is ever accepted or routed by them.
_PHONE: Final = re.compile(r"^\+?[\d\s().-]{8,}$")
# A decimal number as a payment API writes one (no leading zero, optional cents): never PII by shape.
_AMOUNT: Final = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?")
_TOKEN: Final = re.compile(r"^[A-Za-z0-9_\-+/=.]{24,}$")


def _normal(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def redact_value(value: Any) -> Any:
    """Redact a value whose key is unknown: by its shape, recursively."""
    if isinstance(value, dict):
        return {k: "[redacted]" if _normal(str(k)) in _SENSITIVE_KEYS else redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, str):
        if _EMAIL.search(value):
            return "[email]"
        if _AMOUNT.fullmatch(value):
            return value
        if _PHONE.match(value) and sum(c.isdigit() for c in value) >= 8:
            return "[phone]"
        if _TOKEN.match(value) and any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
            return "[token]"
    return value


def redact_at(path: str, value: Any) -> Any:
    """Redact a value found at a JSON path (`$.order.email`): the last key decides first."""
    last = re.split(r"[.\[]", path.rstrip("]"))[-1]
    if value is None:
        return None  # absent (or null) on this side: nothing to hide, and the absence is the difference
    if _normal(last) in _SENSITIVE_KEYS:
        return "[redacted]"
    return redact_value(value)

"""PII and secret redaction for shadow samples: applied before anything is stored or reported.

By key name (email, phone, names, tokens, keys, signatures, URLs that embed tokens) and by value
shape (e-mail addresses, phone numbers, long opaque tokens), at any depth. Pure functions.
"""

from __future__ import annotations

import re
from typing import Any, Final

_SENSITIVE_KEYS: Final = frozenset({
    "email", "phone", "name", "customername", "firstname", "lastname", "fullname", "address", "token",
    "snaptoken", "key", "serverkey", "clientkey", "signaturekey", "secret", "password", "authorization",
    "paymenturl", "redirecturl", "cardnumber", "maskedcard", "vanumber", "billkey",
})
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE: Final = re.compile(r"^\+?[\d\s().-]{8,}$")
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
        if _PHONE.match(value) and sum(c.isdigit() for c in value) >= 8:
            return "[phone]"
        if _TOKEN.match(value) and any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
            return "[token]"
    return value


def redact_at(path: str, value: Any) -> Any:
    """Redact a value found at a JSON path (`$.order.email`): the last key decides first."""
    last = re.split(r"[.\[]", path.rstrip("]"))[-1]
    if _normal(last) in _SENSITIVE_KEYS:
        return "[redacted]"
    return redact_value(value)

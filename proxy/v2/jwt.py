"""HS256 JSON Web Tokens (RFC 7519, 7515) for the admin page's sessions, with the standard library. Pure.

Only HS256 is accepted: a token whose header names another algorithm (`none`, RS256, HS512, ...)
is refused before anything else is read, so no token chooses how it is checked. The signature is
compared in constant time and checked before the claims are believed. Claims: `sub` (the admin
user), `tenant` (the tenant's id: a token of one tenant never works for another, whose key differs
too), `iat` and `exp` (seconds). The clock is the caller's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

MAX_TOKEN_CHARS: Final = 2048
_CLOCK_SKEW_S: Final = 60  # an `iat` this far ahead of our clock is still believed
_SEGMENT_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,1500}")
_HEADER: Final = {"alg": "HS256", "typ": "JWT"}

Reason = Literal["malformed", "algorithm", "signature", "expired", "tenant"]


class TokenRefused(Exception):
    """Why a token is not accepted (a closed set: it labels a metric)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    tenant: str
    issued_at: int
    expires_at: int


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(segment: str) -> bytes:
    if not _SEGMENT_RE.fullmatch(segment):
        raise TokenRefused("malformed", "not a JSON Web Token")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise TokenRefused("malformed", "not a JSON Web Token") from None


def _json_object(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(_decode(segment))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise TokenRefused("malformed", "not a JSON Web Token") from None
    if not isinstance(value, dict):
        raise TokenRefused("malformed", "not a JSON Web Token")
    return value


def _signature(signing_input: str, key: bytes) -> bytes:
    return hmac.new(key, signing_input.encode(), hashlib.sha256).digest()


def issue(subject: str, tenant: str, key: bytes, *, now: float, ttl_s: int) -> str:
    issued = int(now)
    claims = {"sub": subject, "tenant": tenant, "iat": issued, "exp": issued + ttl_s}
    signing_input = ".".join(_encode(json.dumps(part, separators=(",", ":")).encode()) for part in (_HEADER, claims))
    return f"{signing_input}.{_encode(_signature(signing_input, key))}"


def verify(token: str, key: bytes, *, tenant: str, now: float) -> Claims:
    """The token's claims, or TokenRefused saying why not."""
    parts = token.split(".") if len(token) <= MAX_TOKEN_CHARS else []
    if len(parts) != 3:
        raise TokenRefused("malformed", "not a JSON Web Token")
    header = _json_object(parts[0])
    if header.get("alg") != "HS256" or header.get("typ", "JWT") != "JWT" or "crit" in header:
        raise TokenRefused("algorithm", "only HS256 tokens are accepted")
    if not hmac.compare_digest(_decode(parts[2]), _signature(f"{parts[0]}.{parts[1]}", key)):
        raise TokenRefused("signature", "the token's signature is not valid for this tenant")
    claims = _json_object(parts[1])
    subject, owner, issued, expires = (claims.get(k) for k in ("sub", "tenant", "iat", "exp"))
    if not (isinstance(subject, str) and isinstance(owner, str) and type(issued) is int and type(expires) is int):
        raise TokenRefused("malformed", "the token lacks sub, tenant, iat or exp")
    if not hmac.compare_digest(owner.encode(), tenant.encode()):
        raise TokenRefused("tenant", "the token was issued for another tenant")
    if not issued - _CLOCK_SKEW_S <= now < expires:
        raise TokenRefused("expired", "the token has expired; sign in again")
    return Claims(subject, owner, issued, expires)

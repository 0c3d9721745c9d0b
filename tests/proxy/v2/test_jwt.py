"""HS256 session tokens (proxy/v2/jwt.py): what is accepted and why anything else is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from proxy.v2 import jwt

KEY = bytes(range(32))
NOW = 1_800_000_000.0


def _segment(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _signed(header: object, claims: object, key: bytes = KEY) -> str:
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = base64.urlsafe_b64encode(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())
    return f"{signing_input}.{signature.rstrip(b'=').decode()}"


def test_an_issued_token_verifies_until_it_expires() -> None:
    token = jwt.issue("admin", "tenant-a", KEY, now=NOW, ttl_s=900)
    assert jwt.verify(token, KEY, tenant="tenant-a", now=NOW + 899) == jwt.Claims("admin", "tenant-a", int(NOW),
                                                                                   int(NOW) + 900)
    with pytest.raises(jwt.TokenRefused) as refused:
        jwt.verify(token, KEY, tenant="tenant-a", now=NOW + 900)
    assert refused.value.reason == "expired"


@pytest.mark.parametrize(("token", "reason"), [
    (_signed({"alg": "none"}, {"sub": "a", "tenant": "t", "iat": int(NOW), "exp": int(NOW) + 60}), "algorithm"),
    (_signed({"alg": "HS384", "typ": "JWT"}, {"sub": "a", "tenant": "t", "iat": int(NOW), "exp": int(NOW) + 60}),
     "algorithm"),
    (_signed({"alg": "HS256", "crit": ["x"]}, {"sub": "a", "tenant": "t", "iat": int(NOW), "exp": int(NOW) + 60}),
     "algorithm"),
    (_signed({"alg": "HS256"}, {"sub": "a", "tenant": "t", "iat": int(NOW), "exp": int(NOW) + 60}, key=b"other"),
     "signature"),
    (_signed({"alg": "HS256"}, {"sub": "a", "tenant": "u", "iat": int(NOW), "exp": int(NOW) + 60}), "tenant"),
    (_signed({"alg": "HS256"}, {"sub": "a", "tenant": "t", "iat": int(NOW) + 3600, "exp": int(NOW) + 7200}),
     "expired"),  # issued in the future
    (_signed({"alg": "HS256"}, {"sub": "a", "tenant": "t", "exp": int(NOW) + 60}), "malformed"),
    (_signed({"alg": "HS256"}, {"sub": "a", "tenant": "t", "iat": True, "exp": int(NOW) + 60}), "malformed"),
    (_signed({"alg": "HS256"}, ["not", "an", "object"]), "malformed"),
    ("a.b", "malformed"),
    ("a.b.c.d", "malformed"),
    ("e30=.e30=.e30=", "malformed"),  # padding is not base64url as JWTs write it
    ("x" * 3000, "malformed"),
])
def test_refused_with_a_reason(token: str, reason: str) -> None:
    with pytest.raises(jwt.TokenRefused) as refused:
        jwt.verify(token, KEY, tenant="t", now=NOW)
    assert refused.value.reason == reason


def test_a_token_signed_the_same_way_by_hand_is_accepted() -> None:
    """The format is plain RFC 7519: any HS256 library with the key makes tokens we accept."""
    token = _signed({"alg": "HS256", "typ": "JWT"}, {"sub": "a", "tenant": "t", "iat": int(NOW), "exp": int(NOW) + 5})
    assert jwt.verify(token, KEY, tenant="t", now=NOW).subject == "a"

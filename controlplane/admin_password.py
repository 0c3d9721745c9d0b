"""The admin page's sign-in password: scrypt with a salt of its own, as stored and as checked. Pure.

`dualstack tenant set SLUG --admin-user NAME` hashes it (the control plane); v2 checks it at
`POST /admin/login`. Stored as `scrypt$<n>$<r>$<p>$<salt>$<hash>` (base64), so the cost can be
raised later while older hashes still verify. A stored hash whose parameters are past the bounds
below is refused, never computed: a hand-edited row must not make one login take a gigabyte.
A check with nothing to check against (no credential, unknown user) still runs the KDF once, so
it takes as long as a wrong password and tells nobody which user names exist.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
from typing import Final

SCRYPT_N: Final = 2**14  # about 16 MiB and a few tens of milliseconds per check
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
_MAX_N: Final = 2**17
_MAX_R: Final = 16
_MAX_P: Final = 4
_SALT_BYTES: Final = 16
_HASH_BYTES: Final = 32
MIN_PASSWORD_CHARS: Final = 12
MAX_PASSWORD_CHARS: Final = 1024
ADMIN_USER_RE: Final = re.compile(r"[A-Za-z0-9._@+-]{1,64}")  # the migration's CHECK says the same


class PasswordError(ValueError):
    """A new password or user name that cannot be used; the message says why."""


def check_new_login(user: str, password: str) -> None:
    if not ADMIN_USER_RE.fullmatch(user):
        raise PasswordError(f"'{user[:80]}' is not a valid admin user name (1-64 of letters, digits and . _ @ + -)")
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise PasswordError(f"the admin password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=_HASH_BYTES,
                          maxmem=128 * r * (n + p + 2) + 2**20)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = os.urandom(_SALT_BYTES) if salt is None else salt
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(("scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()))


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(x.isdigit() and len(x) <= 7 for x in parts[1:4]):
        return None
    n, r, p = (int(x) for x in parts[1:4])
    if not (2 <= n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        return None
    try:
        salt, digest = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except binascii.Error:
        return None
    return (n, r, p, salt, digest) if salt and len(digest) == _HASH_BYTES else None


@functools.cache
def _stand_in() -> str:
    return hash_password("no credential to check against", salt=b"\0" * _SALT_BYTES)


def verify_password(password: str, stored: str | None) -> bool:
    """True when `password` is the one `stored` was made from; compared in constant time. Slow on
    purpose (run it off the event loop)."""
    parsed = _parse(stored) if stored is not None and len(password) <= MAX_PASSWORD_CHARS else None
    checked = parsed if parsed is not None else _parse(_stand_in())
    assert checked is not None
    n, r, p, salt, digest = checked
    computed = _scrypt(password[:MAX_PASSWORD_CHARS], salt, n, r, p)
    return hmac.compare_digest(computed, digest) and parsed is not None

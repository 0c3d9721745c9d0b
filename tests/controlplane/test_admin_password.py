"""The admin page's password hash (controlplane/admin_password.py): scrypt, salted, bounded."""

from __future__ import annotations

import base64

import pytest

from controlplane.admin_password import PasswordError, check_new_login, hash_password, verify_password


def test_hash_is_salted_scrypt_and_verifies() -> None:
    first, second = hash_password("a long password"), hash_password("a long password")
    assert first != second  # a salt of its own each time
    assert first.startswith("scrypt$16384$8$1$") and "a long password" not in first
    assert verify_password("a long password", first) and verify_password("a long password", second)
    assert not verify_password("a long passworD", first)


@pytest.mark.parametrize("stored", [
    None, "", "plain text", "scrypt$16384$8$1$AAAA",
    "scrypt$1048576$8$1$" + base64.b64encode(b"s" * 16).decode() + "$" + base64.b64encode(b"h" * 32).decode(),
    "scrypt$1000$8$1$" + base64.b64encode(b"s" * 16).decode() + "$" + base64.b64encode(b"h" * 32).decode(),
    "scrypt$16384$8$1$!!!!$" + base64.b64encode(b"h" * 32).decode(),
])
def test_an_unusable_stored_hash_never_verifies_and_is_never_computed_as_given(stored: str | None) -> None:
    assert verify_password("anything at all", stored) is False


def test_new_logins_are_checked() -> None:
    check_new_login("siti@shop.example", "twelve chars")
    for user, password in (("", "twelve chars"), ("with space", "twelve chars"), ("a" * 65, "twelve chars"),
                           ("admin", "short"), ("admin", "x" * 1025)):
        with pytest.raises(PasswordError):
            check_new_login(user, password)

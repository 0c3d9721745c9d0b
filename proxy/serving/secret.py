"""A secret both servers hold (a Midtrans server key, an SMTP password): never in a log, a repr or an
error message; `reveal()` only where it is used."""

from __future__ import annotations


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

"""ConfigIssue and ConfigError: what is wrong with a config file, and where."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PathKey = str | int


def format_path(path: Iterable[PathKey]) -> str:
    """`("tenants", "buatfilm", "hosts", 0)` -> `tenants.buatfilm.hosts[0]`."""
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else key
    return out


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem, located as `file:line: path: message` (line 0 when the file itself is)."""

    source: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return _one_line(f"{where}: {self.path or '(document)'}: {self.message}")


def _one_line(text: str) -> str:
    """Control characters written as escapes: a key such as "beta\n" cannot break the line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class ConfigError(Exception):
    """A config file that cannot be used; carries every issue found in one pass."""

    def __init__(self, issues: tuple[ConfigIssue, ...]) -> None:
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = issues

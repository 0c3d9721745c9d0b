"""Collecting config issues while walking a document: typed getters that report instead of raising."""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from typing import Any, Final
from urllib.parse import urlsplit

from controlplane.config.issues import ConfigIssue, PathKey
from controlplane.config.load import LoadedDocument

Path_ = tuple[PathKey, ...]


LABEL_RE: Final = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")

def is_hostname(value: str) -> bool:
    """A lower-case DNS name of labels (no port, no trailing dot, no wildcard)."""
    if not value or len(value) > 253:
        return False
    return all(LABEL_RE.fullmatch(label) for label in value.split("."))

class Collector:
    """Walks the document; every check adds issues instead of stopping at the first."""

    def __init__(self, doc: LoadedDocument) -> None:
        self.doc = doc
        self.issues: list[ConfigIssue] = list(doc.issues)

    def add(self, path: Path_, message: str) -> None:
        self.issues.append(self.doc.issue(path, message))

    def mapping(self, value: Any, path: Path_, allowed: set[str], required: set[str]) -> bool:
        if not isinstance(value, dict):
            self.add(path, f"must be a mapping, got {kind_of(value)}")
            return False
        for key in value:
            if key not in allowed:
                hint = _closest(key, allowed)
                self.add((*path, key), "unknown key" + (f" (did you mean '{hint}'?)" if hint else ""))
        for key in sorted(required - value.keys()):
            self.add(path, f"missing required key '{key}'")
        return True

    def string(self, value: Any, path: Path_) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.add(path, f"must be a non-empty string, got {kind_of(value)}")
            return None
        return value.strip()

    def number(self, value: Any, path: Path_, *, minimum: float, maximum: float | None,
               integer: bool = False) -> float | None:
        """A finite number in [minimum, maximum]; `maximum=None` only where the caller checks its own."""
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            self.add(path, f"must be {'an integer' if integer else 'a number'}, got {kind_of(value)}")
            return None
        if not math.isfinite(value):  # .nan passes every comparison; .inf means "never"
            self.add(path, f"must be a finite number, got {value}")
            return None
        if value < minimum:
            self.add(path, f"must be at least {minimum:g}, got {value}")
            return None
        if maximum is not None and value > maximum:
            self.add(path, f"must be at most {maximum:g}, got {value}")
            return None
        return float(value)

    def string_list(self, value: Any, path: Path_) -> list[tuple[Path_, str]]:
        if not isinstance(value, list):
            self.add(path, f"must be a list, got {kind_of(value)}")
            return []
        out = []
        for index, item in enumerate(value):
            text = self.string(item, (*path, index))
            if text is not None:
                out.append(((*path, index), text))
        return out

def kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )

def _closest(key: str, allowed: set[str]) -> str | None:
    # A slip (tpc: tcp, 0.67), not a guess (colour: rollout, 0.62).
    matches = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.65)
    return matches[0] if matches else None

_DNS_NAME: Final = re.compile(r"(?=.{1,253}\.?\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                               r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


def _is_host(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return bool(_DNS_NAME.fullmatch(host))
    # An IPv6 zone (`%eth0`) takes any text, and nginx refuses zones anyway.
    return getattr(address, "scope_id", None) is None


def check_url(c: Collector, url: str, path: Path_) -> str | None:
    if "://" not in url:
        c.add(path, f"'{url}' is not a URL such as http://127.0.0.1:3002")
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        c.add(path, f"not a valid URL: {exc}")
        return None
    problems = []
    if parts.scheme not in ("http", "https"):
        problems.append("scheme must be http or https")
    if not parts.hostname:
        problems.append("a host is required")
    elif not _is_host(parts.hostname):
        # The host goes into nginx's config and the routers' connections as written: `;`, braces or
        # quotes there would be directives of their own.
        problems.append("the host must be an IP address or a DNS name (letters, digits, '-' and '.')")
    if parts.username or parts.password:
        problems.append("credentials do not belong in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        problems.append("no path, query or fragment: the request's own path is forwarded")
    if problems:
        c.add(path, f"'{url}': " + "; ".join(problems))
        return None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{netloc}" + (f":{port}" if port is not None else "")

"""Browser origins (`scheme://host[:port]`), as CORS compares them: the tenant's own and the extra ones
it allows. Pure: the tenant admin checks what it stores with it, v2 what it reads."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from controlplane.config.collector import is_hostname

MAX_CORS_ORIGINS: Final = 20  # per tenant; the database's CHECK says the same
_ORIGIN_RE: Final = re.compile(r"(https?)://([a-z0-9.-]{1,253})(?::([0-9]{1,5}))?")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class OriginError(ValueError):
    """Not an origin a browser sends; the message says what one looks like."""


def parse_origin(text: str) -> str:
    """`HTTPS://Shop.Example:443` -> `https://shop.example`: the form a browser's Origin header has."""
    candidate = text.lower()  # no strip: a stray newline or space is refused, not silently dropped
    match = _ORIGIN_RE.fullmatch(candidate)
    if match is None or not is_hostname(match[2]):
        raise OriginError(f"'{text[:100]}' is not an origin such as https://shop.example or "
                          "http://localhost:5173 (scheme, host and port only; no path, no '*')")
    scheme, host, port = match[1], match[2], match[3]
    if port is None or int(port) == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    if not 0 < int(port) < 65536:
        raise OriginError(f"'{text[:100]}': {port} is not a port number")
    return f"{scheme}://{host}:{int(port)}"


def check_origins(origins: Iterable[str]) -> tuple[str, ...]:
    """The origins normalized, duplicates dropped, at most MAX_CORS_ORIGINS; OriginError otherwise."""
    out = tuple(dict.fromkeys(parse_origin(origin) for origin in origins))
    if len(out) > MAX_CORS_ORIGINS:
        raise OriginError(f"at most {MAX_CORS_ORIGINS} CORS origins per tenant, got {len(out)}")
    return out


def host_origins(hosts: Iterable[str]) -> frozenset[str]:
    """A tenant's own hosts as origins: each over https and http (default ports)."""
    return frozenset(f"{scheme}://{host}" for host in hosts for scheme in ("https", "http"))

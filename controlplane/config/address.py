"""Listen addresses: `HOST:PORT`, `[::1]:PORT` for IPv6, `:PORT` for all IPv4 interfaces."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self}"


def parse_listen(text: str) -> ListenAddress:
    """Parse `HOST:PORT`; raise ValueError with a message an operator can act on."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"'{text}': an IPv6 address is written [ADDRESS]:PORT, e.g. [::1]:8080")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"'{text}': '{host}' is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"'{text}': expected HOST:PORT, e.g. 127.0.0.1:8080")
        if ":" in host:
            raise ValueError(f"'{text}': put an IPv6 address in brackets, e.g. [::1]:8080")
        host = host or "0.0.0.0"
    # str.isdigit() also accepts other scripts' digits ("٨٠"), which int() then reads
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"'{text}': the port must be a number from 0 to 65535")
    return ListenAddress(host, int(port_text))

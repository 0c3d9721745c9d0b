"""A server block of ops' own that names an address on a port the generated blocks listen on.

The generated server blocks listen on every address (`listen 80`). nginx picks a request's server
among the blocks whose `listen` names the exact address the request came to before any listening
on every address: one `listen 127.0.0.1:80` block of ops' own would take every request to
127.0.0.1:80, a generated tenant's included, and send it on as its own tenant. Pure: reads the text
`nginx -T` prints.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Final

from controlplane.render.nginx_dump import files_read

_STATEMENT_END: Final = re.compile(r"[;{}]")


def _every_address(address: str) -> bool:
    if address == "*":
        return True
    try:
        return ipaddress.ip_address(address).is_unspecified  # 0.0.0.0, ::, [::0], ...
    except ValueError:
        return False  # a host name: one address


def _address_and_port(target: str) -> tuple[str, int] | None:
    """`listen`'s first argument as (address, port); "*" for every address; None for a unix socket."""
    if target.startswith("unix:"):
        return None
    if target.isdigit():
        return "*", int(target)
    if target.startswith("["):
        address, _, rest = target[1:].partition("]")
        port = rest.removeprefix(":")
        return address, int(port) if port.isdigit() else 80
    address, _, port = target.rpartition(":")
    if not address:  # a host alone: port 80
        return target, 80
    return address, int(port) if port.isdigit() else 80


def _listens(text: str) -> list[str]:
    """The first argument of every `listen` directive, however it is split across lines or quoted."""
    out = []
    for statement in _STATEMENT_END.split(text):
        words = statement.split()
        if len(words) >= 2 and words[0] == "listen":
            out.append(words[1].strip("\"'"))
    return out


def address_listens(dump: str, directory: str) -> list[str]:
    """Each `listen` outside the generated files (those under `directory`) that names one address on
    a port a generated block listens on, as a sentence saying where and what to do."""
    generated_ports: set[int] = set()
    own: list[tuple[str, str, str, int]] = []  # (file, target, address, port)
    root = os.path.realpath(directory)
    for path, lines in files_read(dump).items():
        text = "\n".join(line.partition("#")[0] for line in lines)  # a comment is no directive
        generated = os.path.realpath(path).startswith(root + os.sep)
        for target in _listens(text):
            if (parsed := _address_and_port(target)) is None:
                continue
            address, port = parsed
            if generated:
                generated_ports.add(port)
            elif not _every_address(address):
                own.append((path, target, address, port))
    return [f"{file}: `listen {target}` names one address on port {port}, where the generated server blocks "
            f"listen on every address: nginx gives that block every request to {address}:{port}, a generated "
            f"tenant's included, and it sends each on as its own tenant. Listen on the port alone (`listen "
            f"{port};`) or on another port"
            for file, target, address, port in own if port in generated_ports]

"""Header hygiene in one place: hop-by-hop removal, the headers the router owns, request ids.

The upstream request head is built as bytes straight from the client's raw headers: no header
object is created per forwarded request.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Sequence
from typing import Final

from multidict import CIMultiDict

from controlplane.config.tenant import TENANT_HEADER
from proxy.serving.wire import REQUEST_ID, SHADOW_HEADER

# RFC 9110 section 7.6.1, plus the legacy names proxies must not forward.
HOP_BY_HOP: Final = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})

BACKEND_HEADER: Final = "X-Dualstack-Backend"

# Headers the router sets on the upstream request itself; a client's copy never passes through.
# Content-Length and Expect go too: the router frames the body it sends on its own.
_REQUEST_DROP: Final = frozenset(
    name.encode() for name in HOP_BY_HOP | {
        TENANT_HEADER.lower(), REQUEST_ID.lower(), "x-forwarded-for", "x-forwarded-proto",
        "x-forwarded-host", "forwarded", "x-real-ip", "host", "content-length", "expect", SHADOW_HEADER.lower(),
    }
)
# Set on responses by the router; an upstream's copy is replaced. Content-Length is the router's
# to set (from the body it relays).
_RESPONSE_DROP: Final = HOP_BY_HOP | {REQUEST_ID.lower(), BACKEND_HEADER.lower(), "content-length"}

_REQUEST_ID_RE: Final = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
# Request ids only need to be unique: a random per-process prefix and a counter cost no syscall.
_ID_PREFIX: Final = os.urandom(8).hex()
_id_counter = itertools.count(1)


def request_id_from(value: str | None, trusted: bool) -> str:
    """A trusted peer's well-formed request id, or a fresh one."""
    if trusted and value is not None and _REQUEST_ID_RE.fullmatch(value):
        return value
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


def body_framing(length: int | None) -> tuple[bytes, bool]:
    """The framing line for a body sent upstream (Content-Length, or chunked when its length is
    unknown), and whether it is chunked."""
    if length is not None:
        return b"Content-Length: %d\r\n" % length, False
    return b"Transfer-Encoding: chunked\r\n", True


def _connection_named(values: Iterable[str]) -> frozenset[str]:
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


def upstream_head(
    method: str,
    raw_path: str,
    raw_headers: Sequence[tuple[bytes, bytes]],
    *,
    tenant: str,
    request_id: str,
    peer: str | None,
    trusted: bool,
    scheme: str,
    host: str | None,
    prior_forwarded_for: str | None,
    prior_forwarded_proto: str | None,
    prior_forwarded_host: str | None,
    body_framing: bytes,
) -> bytes:
    """The HTTP/1.1 head for the upstream request: the client's headers, cleaned, plus the router's.

    `body_framing` is the Content-Length or Transfer-Encoding line for the body the router sends
    (empty for none). Values come from aiohttp's parser, which rejects CR and LF, or are validated
    by the router (tenant slug, request id), so nothing here can split a header.
    """
    lines = [f"{method} {raw_path} HTTP/1.1\r\n".encode("utf-8", "surrogateescape")]
    named: list[bytes] = []  # headers the client's Connection header declares hop-by-hop (rare)
    for name, value in raw_headers:
        lower = name.lower()
        if lower in _REQUEST_DROP:
            if lower == b"connection":
                named.extend(n.encode() for n in _connection_named([value.decode("latin-1")]))
            continue
        lines.append(b"%s: %s\r\n" % (name, value))
    if named:
        drop = {n + b":" for n in named}
        lines[1:] = [line for line in lines[1:] if line.split(b" ", 1)[0].lower() not in drop]
    forwarded_for = f"{prior_forwarded_for}, {peer}" if trusted and prior_forwarded_for and peer else peer
    proto = prior_forwarded_proto if trusted and prior_forwarded_proto in ("http", "https") else scheme
    forwarded_host = (prior_forwarded_host if trusted and prior_forwarded_host else None) or host
    router_lines = [f"{TENANT_HEADER}: {tenant}", f"{REQUEST_ID}: {request_id}",
                    f"X-Forwarded-Proto: {proto}"]
    if host:
        router_lines.append(f"Host: {host}")
    if forwarded_for:
        router_lines.append(f"X-Forwarded-For: {forwarded_for}")
    if forwarded_host:
        router_lines.append(f"X-Forwarded-Host: {forwarded_host}")
    lines.append(("\r\n".join(router_lines) + "\r\n").encode("latin-1"))
    lines.append(body_framing)
    lines.append(b"\r\n")
    return b"".join(lines)


def client_response_headers(
    headers: Sequence[tuple[str, str]], *, request_id: str, backend: str
) -> CIMultiDict[str]:
    """Headers for the client: the upstream's, cleaned, plus request id and serving backend."""
    kept: list[tuple[str, str]] = []
    connection: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower in _RESPONSE_DROP:
            if lower == "connection":
                connection.append(value)
            continue
        kept.append((name, value))
    if connection:  # names the upstream's Connection header declares hop-by-hop
        extra = _connection_named(connection)
        kept = [(n, v) for n, v in kept if n.lower() not in extra]
    kept.append((REQUEST_ID, request_id))
    kept.append((BACKEND_HEADER, backend))
    return CIMultiDict(kept)

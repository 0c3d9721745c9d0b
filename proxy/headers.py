"""Header hygiene in one place: hop-by-hop removal and the headers the router owns."""

from __future__ import annotations

import re
import uuid
from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy

from proxy.tenant import TENANT_HEADER

# RFC 9110 section 7.6.1, plus the legacy names proxies must not forward.
HOP_BY_HOP: Final = frozenset(
    h.lower()
    for h in (
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
        "TE", "Trailer", "Transfer-Encoding", "Upgrade",
    )
)

REQUEST_ID: Final = "X-Request-ID"
BACKEND_HEADER: Final = "X-Dualstack-Backend"

# Headers the router sets itself; a client's copy never passes through.
ROUTER_OWNED: Final = frozenset(
    h.lower()
    for h in (
        TENANT_HEADER, REQUEST_ID, "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
        "Forwarded", "X-Real-IP", "Host",
    )
)
# Set on responses by the router; an upstream's copy is replaced.
RESPONSE_OWNED: Final = frozenset(h.lower() for h in (REQUEST_ID, BACKEND_HEADER))

_REQUEST_ID_RE: Final = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


def request_id_from(value: str | None, trusted: bool) -> str:
    """A trusted peer's well-formed request id, or a fresh one."""
    if trusted and value is not None and _REQUEST_ID_RE.match(value):
        return value
    return uuid.uuid4().hex


def _connection_named(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    names = headers.getall("Connection", ())
    if not names:
        return frozenset()
    return frozenset(t.strip().lower() for v in names for t in v.split(",") if t.strip())


def _copy(
    headers: CIMultiDictProxy[str], drop: frozenset[str]
) -> CIMultiDict[str]:
    extra = _connection_named(headers)
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lower = name.lower()
        if lower in drop or lower in HOP_BY_HOP or lower in extra:
            continue
        out.add(name, value)
    return out


def upstream_request_headers(
    headers: CIMultiDictProxy[str],
    *,
    tenant: str,
    request_id: str,
    peer: str | None,
    trusted: bool,
    scheme: str,
    host: str | None,
) -> CIMultiDict[str]:
    """Headers for the upstream request: the client's, cleaned, plus the ones the router owns."""
    out = _copy(headers, ROUTER_OWNED)
    if host:
        out["Host"] = host
    out[TENANT_HEADER] = tenant
    out[REQUEST_ID] = request_id
    prior = headers.get("X-Forwarded-For") if trusted else None
    if peer:
        out["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    proto = headers.get("X-Forwarded-Proto") if trusted else None
    out["X-Forwarded-Proto"] = proto if proto in ("http", "https") else scheme
    forwarded_host = headers.get("X-Forwarded-Host") if trusted else None
    if forwarded_host or host:
        out["X-Forwarded-Host"] = forwarded_host or host or ""
    return out


def client_response_headers(
    headers: CIMultiDictProxy[str], *, request_id: str, backend: str
) -> CIMultiDict[str]:
    """Headers for the client: the upstream's, cleaned, plus request id and serving backend."""
    out = _copy(headers, RESPONSE_OWNED)
    out[REQUEST_ID] = request_id
    out[BACKEND_HEADER] = backend
    return out

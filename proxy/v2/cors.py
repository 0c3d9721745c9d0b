"""CORS for pages that call the API by absolute URL: what v1's Express `cors()` gave them, per tenant.

v1 answered every request with `Access-Control-Allow-Origin: *` and every preflight with 204. v2
allows the tenant's own origins (https and http of `<slug>.<base_domain>` and of its routing-file
`hosts`) and those set with `dualstack tenant set --cors-origin`; nothing else, so another site's
pages cannot drive a tenant's admin API from a visitor's browser.

- A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here, 204, and
  never reaches a handler: with Allow-Origin, -Methods, -Headers and Max-Age for an allowed origin,
  with none of them otherwise (the browser then refuses the call).
- Any other request from an allowed origin gets `Access-Control-Allow-Origin: <origin>` on its
  answer, errors included (a page can show why its call failed).
- Every answer carries `Vary: Origin`: it depends on the Origin, so a cache must not reuse it for another.
No credentials (cookies) are allowed: the admin API takes a Bearer token.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from controlplane.config.origin import OriginError, host_origins, parse_origin
from controlplane.config.tenant import TenantRule
from proxy.v2 import keys
from proxy.v2.db import DATABASE_DOWN, TenantRecord
from proxy.v2.resolve import find_tenant

ALLOWED_METHODS: Final = "GET, HEAD, POST, PUT"
ALLOWED_HEADERS: Final = "Content-Type, Authorization, X-Request-ID"
MAX_AGE_S: Final = 600  # browsers cap it anyway (Chromium at 2 h); a changed list shows within 10 min
_MAX_ORIGIN_CHARS: Final = 300


def allowed_origins(rule: TenantRule, tenant: TenantRecord) -> frozenset[str]:
    """The tenant's own hosts as origins, and its stored extra ones (one that no longer parses is skipped:
    `dualstack tenant` and the database's CHECK keep them valid, so it can only be a hand edit)."""
    extra = set()
    for stored in tenant.cors_origins:
        try:
            extra.add(parse_origin(stored))
        except OriginError:
            continue
    return host_origins(rule.hosts_of(tenant.slug)) | extra


async def _allowed(request: web.Request, origin: str) -> bool:
    if len(origin) > _MAX_ORIGIN_CHARS:
        return False
    try:
        normalized = parse_origin(origin)  # "null" (a sandboxed page, a file://) is never allowed
    except OriginError:
        return False
    try:
        tenant = await find_tenant(request)
    except DATABASE_DOWN:  # the handler meets the outage too, and answers 503
        return False
    if tenant is None:
        return False
    return normalized in allowed_origins(request.app[keys.V2_SETTINGS].rule, tenant)


def _vary_origin(headers: CIMultiDict[str]) -> None:
    vary = headers.get("Vary")
    if vary is None:
        headers["Vary"] = "Origin"
    elif "origin" not in {part.strip().lower() for part in vary.split(",")} and vary.strip() != "*":
        headers["Vary"] = f"{vary}, Origin"


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    allowed = origin is not None and await _allowed(request, origin)
    if request.method == "OPTIONS" and origin is not None and "Access-Control-Request-Method" in request.headers:
        preflight = web.Response(status=204)
        if allowed:
            preflight.headers.update({
                "Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS, "Access-Control-Max-Age": str(MAX_AGE_S)})
        _vary_origin(preflight.headers)
        return preflight
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # aiohttp's own 404/405, raised past every middleware
        if allowed and origin is not None:
            exc.headers["Access-Control-Allow-Origin"] = origin
        _vary_origin(exc.headers)
        raise
    if not response.prepared:  # a streamed answer has sent its headers already
        if allowed and origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
        _vary_origin(response.headers)
    return response

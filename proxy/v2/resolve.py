"""The tenant of a v2 request: the router's rule (shared code), then the tenants table."""

from __future__ import annotations

from aiohttp import web

from controlplane.config.tenant import TENANT_HEADER
from proxy.v2 import keys
from proxy.v2.db import TenantRecord
from proxy.v2.responses import JsonError


async def find_tenant(request: web.Request) -> TenantRecord | None:
    settings = request.app[keys.V2_SETTINGS]
    claim = settings.rule.claim(peer=request.remote, header_slug=request.headers.get(TENANT_HEADER),
                                host=request.headers.get("Host"), query_string=request.query_string)
    if claim is None or not claim.valid:
        return None
    return await request.app[keys.V2_DB].tenant_by_slug(claim.slug)


async def require_tenant(request: web.Request) -> TenantRecord:
    tenant = await find_tenant(request)
    if tenant is None:
        raise JsonError(404, "unknown_tenant", "this request names no known tenant")
    return tenant

"""`GET /health`, `/health/ready` and `/health/live`: v2's own health, with v1's keys beside it.

v1 (PostgreSQL generation) answers `{uptime, timestamp, status: "healthy", service, database}` and
has a readiness and a liveness route; monitors and load balancers written for v1 call those. v2's
`/health` keeps its own keys (`status` ok/degraded, `version`, `database` up/down, `tenant`) and
adds v1's where the name is free: `uptime` (seconds, as Node's process.uptime()), `timestamp`
(ISO 8601 UTC, as Node's Date.toISOString()) and `service`. v1's `status: healthy` clashes with
v2's `status` and is left out.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from proxy.v2 import keys
from proxy.v2.resolve import find_tenant

SERVICE: Final = "dualstack-v2"


def _clock(request: web.Request) -> dict[str, object]:
    uptime_s = time.monotonic() - request.app[keys.V2_STARTED]
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"uptime": round(uptime_s, 3), "timestamp": now, "service": SERVICE}


async def health(request: web.Request) -> web.Response:
    settings = request.app[keys.V2_SETTINGS]
    up = await request.app[keys.V2_DB].ping()
    body: dict[str, object] = {"status": "ok" if up else "degraded", "version": settings.version,
                               "database": "up" if up else "down", **_clock(request)}
    if up:
        tenant = await find_tenant(request)
        if tenant is not None:
            body["tenant"] = tenant.slug
    return web.json_response(body, status=200 if up else 503)


async def ready(request: web.Request) -> web.Response:
    """Ready to take traffic: the payment database answers (503 otherwise, so a balancer skips us)."""
    up = await request.app[keys.V2_DB].ping()
    body = {"status": "ready" if up else "not ready", "database": "up" if up else "down", **_clock(request)}
    return web.json_response(body, status=200 if up else 503)


async def live(request: web.Request) -> web.Response:
    """The process answers: no dependency is asked (a database outage must not get v2 restarted)."""
    return web.json_response({"status": "alive", **_clock(request)})


def add_routes(app: web.Application) -> None:
    app[keys.V2_STARTED] = time.monotonic()
    app.router.add_get("/health", health)
    app.router.add_get("/health/ready", ready)
    app.router.add_get("/health/live", live)

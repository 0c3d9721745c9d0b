"""The admin listener: /metrics, /healthz, /readyz and a read-only view of the routing table."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from proxy.metrics import exposition_registry
from proxy.state import RouterState


def create_admin_app(state: RouterState, registry: CollectorRegistry) -> web.Application:
    exposed = exposition_registry(registry)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(exposed), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        if state.draining:
            return web.json_response({"status": "draining"}, status=503)
        return web.json_response({"status": "ready", "generation": state.table.generation})

    async def routes(_: web.Request) -> web.Response:
        view = state.table.describe()
        view["last_reload"] = {
            "ok": state.last_reload_ok,
            "at_s": state.last_reload_at_s,
            "issues": [str(issue) for issue in state.last_issues],
        }
        return web.json_response(view)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/routes", routes)
    return app

"""The admin listener: /metrics, /healthz, /readyz and a read-only view of the routing table."""

from __future__ import annotations

import os

from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.router.state import RouterState
from proxy.serving.exposition import metrics_handler


def create_admin_app(state: RouterState, registry: CollectorRegistry) -> web.Application:
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
        # A watcher that stopped (or hangs in a read) shows here: last_run_at_s stops moving.
        view["watcher"] = {"last_run_at_s": state.watch_last_run_s, "reloading_since_s": state.reloading_since_s}
        # Who parsed the snapshot this worker serves: with several workers, their supervisor, once.
        view["snapshot"] = {"parsed_by_pid": state.published.parsed_by_pid, "parse_s": state.published.parse_s,
                            "worker_pid": os.getpid()}
        return web.json_response(view)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(registry))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/routes", routes)
    return app

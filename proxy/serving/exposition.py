"""What /metrics renders in either server: the worker's own registry, or, with several workers,
the aggregate of every worker's multiprocess files (PROMETHEUS_MULTIPROC_DIR, set by the supervisor)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from proxy.serving.metric_files import LockedCollector


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition_registry(own: CollectorRegistry) -> CollectorRegistry:
    """The registry /metrics should render: the worker's own, or the aggregate of all workers."""
    if not multiprocess_enabled():
        return own
    registry = CollectorRegistry()
    registry.register(LockedCollector(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    return registry


def metrics_handler(own: CollectorRegistry) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /metrics over `exposition_registry(own)`, rendered in a thread: with several workers it
    reads every worker's files under the folder's shared lock (held off while the supervisor folds a
    dead worker's), and at 10,000 tenants the text takes tens of milliseconds to render; the
    requests this worker serves must not wait for either."""
    exposed = exposition_registry(own)
    rendering = asyncio.Lock()  # one render at a time: scrapes queue here, never as threads held in the pool

    async def metrics(_: web.Request) -> web.Response:
        async with rendering:
            body = await asyncio.to_thread(generate_latest, exposed)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics

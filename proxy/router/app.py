"""Composition root of the router: create_apps() wires config, state, pools, metrics and the request path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from controlplane.config import ConfigFile
from controlplane.state.schema import STATE_SCHEMA
from proxy.router import keys
from proxy.router.admin import create_admin_app
from proxy.router.forward import UpstreamPools
from proxy.router.handout import Handout
from proxy.router.hold_watch import HoldWatcher
from proxy.router.holds import WriteHolds
from proxy.router.locks import LOCK_POLL_S, read_first, watch_locks
from proxy.router.metrics import SHADOW_FLUSH_S, ProxyMetrics
from proxy.router.mirror import Mirror
from proxy.router.notification_keys import KeyStore
from proxy.router.request import handle
from proxy.router.routing import RoutingTable
from proxy.router.shadow_store import ShadowStore
from proxy.router.state import RouterState
from proxy.router.v1_orders import V1OrdersSeen
from proxy.router.verify import NotificationGate
from proxy.serving.tasks import TaskPool

RELOAD_POLL_INTERVAL_S = 0.5


async def _flush_shadow_metrics(metrics: ProxyMetrics, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        metrics.flush_shadow()


def create_apps(
    config_path: str | Path,
    registry: CollectorRegistry,
    *,
    reload_interval_s: float = RELOAD_POLL_INTERVAL_S,
    state_database_url: str | None = None,
    state_schema: str = STATE_SCHEMA,
    lock_poll_s: float = LOCK_POLL_S,
    shadow_flush_s: float = SHADOW_FLUSH_S,
    notification_keys: KeyStore | None = None,
    handout: Handout | None = None,
) -> tuple[web.Application, web.Application]:
    """The proxy app and its admin app. Raises ConfigError if the routing file is unusable.
    A worker under a supervisor is given a `handout`: the routing its supervisor parsed, which it
    follows instead of reading the file itself.
    Midtrans notifications are verified with `notification_keys` before any backend sees one; without
    a key source every notification is refused (503), never delivered unverified."""
    metrics = ProxyMetrics(registry)
    tasks = TaskPool("router", limit=64,
                     on_drop=lambda reason: metrics.background_dropped.labels("router", reason).inc())
    pools = UpstreamPools(tasks)

    def on_swap(table: RoutingTable) -> None:
        upstreams = set(table.config.upstreams.values())
        pools.keep_only(upstreams)
        mirror.reconfigure(table.config.shadow_limits, upstreams)  # created below; swaps come later

    state = RouterState(ConfigFile(config_path), metrics, on_swap=on_swap,
                        published=handout.published if handout is not None else None)
    store = ShadowStore(state_database_url, state_schema) if state_database_url else None
    mirror = Mirror(state.table.config.shadow_limits, metrics, store)
    v1_orders = V1OrdersSeen(state_database_url, state_schema) if state_database_url else None
    holds = WriteHolds(state, metrics) if state_database_url else None
    watcher = (HoldWatcher(holds, metrics, state_database_url, state_schema, lock_poll_s)
               if holds is not None and state_database_url else None)

    app = web.Application(handler_args={"max_field_size": 16384})
    app[keys.STATE] = state
    app[keys.METRICS] = metrics
    app[keys.REGISTRY] = registry
    app[keys.POOLS] = pools
    app[keys.TASKS] = tasks
    app[keys.MIRROR] = mirror
    app[keys.V1_ORDERS] = v1_orders
    app[keys.HOLDS] = holds
    app[keys.NOTIFICATION_GATE] = NotificationGate(notification_keys, metrics)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        if handout is None:
            tasks.spawn(state.watch(reload_interval_s), name="config-watch")
        else:
            tasks.spawn(state.follow(handout), name="config-follow")
        tasks.spawn(_flush_shadow_metrics(metrics, shadow_flush_s), name="shadow-metrics")
        if store is not None:
            await store.open()
            tasks.spawn(store.run(), name="shadow-store")
        if v1_orders is not None:
            await v1_orders.open()
            tasks.spawn(v1_orders.run(), name="v1-orders-seen")
        if state_database_url:
            await read_first(state, metrics, state_database_url, state_schema)  # before the first request
            tasks.spawn(watch_locks(state, metrics, state_database_url, state_schema, lock_poll_s),
                        name="rollout-locks")
        if watcher is not None:
            await watcher.start()
            tasks.spawn(watcher.listen(), name="write-holds-listen")
            tasks.spawn(watcher.run(), name="write-holds")
        yield
        state.draining = True
        if holds is not None:
            await holds.close()
        await mirror.close()
        metrics.flush_shadow()
        if store is not None:
            await store.close()
        if v1_orders is not None:
            await v1_orders.close()
        await tasks.close(timeout_s=0)
        if watcher is not None:  # after its tasks stopped: nothing registers it again
            await watcher.close()
        await pools.close()
        if notification_keys is not None:
            await notification_keys.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app, create_admin_app(state, registry)

"""Every web.AppKey of the router in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry

if TYPE_CHECKING:
    from proxy.router.forward import UpstreamPools
    from proxy.router.holds import WriteHolds
    from proxy.router.metrics import ProxyMetrics
    from proxy.router.mirror import Mirror
    from proxy.router.state import RouterState
    from proxy.router.v1_orders import V1OrdersSeen
    from proxy.router.verify import NotificationGate
    from proxy.serving.tasks import TaskPool

STATE: web.AppKey[RouterState] = web.AppKey("state")
METRICS: web.AppKey[ProxyMetrics] = web.AppKey("metrics")
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry")
POOLS: web.AppKey[UpstreamPools] = web.AppKey("pools")
TASKS: web.AppKey[TaskPool] = web.AppKey("tasks")
MIRROR: web.AppKey[Mirror] = web.AppKey("mirror")
# Every Midtrans notification passes it before any backend sees one (without a key source: refused, 503).
NOTIFICATION_GATE: web.AppKey[NotificationGate] = web.AppKey("notification_gate")
# Order ids v1 created or answered for, sampled for the cutover preflight (None: no state database).
V1_ORDERS: web.AppKey[V1OrdersSeen | None] = web.AppKey("v1_orders")
# The tenants whose writes a cutover holds now (None: no state database, so no holds).
HOLDS: web.AppKey[WriteHolds | None] = web.AppKey("holds")

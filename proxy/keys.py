"""Every web.AppKey of the router in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry

if TYPE_CHECKING:
    from proxy.forward import UpstreamPools
    from proxy.metrics import ProxyMetrics
    from proxy.state import RouterState
    from proxy.tasks import TaskPool

STATE: web.AppKey[RouterState] = web.AppKey("state")
METRICS: web.AppKey[ProxyMetrics] = web.AppKey("metrics")
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry")
POOLS: web.AppKey[UpstreamPools] = web.AppKey("pools")
TASKS: web.AppKey[TaskPool] = web.AppKey("tasks")

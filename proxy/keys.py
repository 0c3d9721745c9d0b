"""Every web.AppKey of the router in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry

if TYPE_CHECKING:
    from proxy.forward import UpstreamPools
    from proxy.metrics import ProxyMetrics
    from proxy.mirror import Mirror
    from proxy.state import RouterState
    from proxy.tasks import TaskPool

STATE: web.AppKey[RouterState] = web.AppKey("state")
METRICS: web.AppKey[ProxyMetrics] = web.AppKey("metrics")
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry")
POOLS: web.AppKey[UpstreamPools] = web.AppKey("pools")
TASKS: web.AppKey[TaskPool] = web.AppKey("tasks")
MIRROR: web.AppKey[Mirror] = web.AppKey("mirror")

# -- the v2 payment service -------------------------------------------------------------------
if TYPE_CHECKING:
    from proxy.v2.db import PaymentsDB
    from proxy.v2.gateway import PaymentGateway
    from proxy.v2.outbox import Outbox
    from proxy.v2.settings import V2Settings

V2_SETTINGS: web.AppKey[V2Settings] = web.AppKey("v2_settings")
V2_DB: web.AppKey[PaymentsDB] = web.AppKey("v2_db")
V2_GATEWAY: web.AppKey[PaymentGateway] = web.AppKey("v2_gateway")
V2_OUTBOX: web.AppKey[Outbox] = web.AppKey("v2_outbox")

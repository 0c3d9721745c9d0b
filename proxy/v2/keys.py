"""Every web.AppKey of the v2 payment service in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from proxy.v2.admin_page import AdminSessions
    from proxy.v2.db import PaymentsDB
    from proxy.v2.gateway import PaymentGateway, StatusSource
    from proxy.v2.metrics import V2Metrics
    from proxy.v2.outbox import Outbox
    from proxy.v2.read_confirm import ReadConfirmer
    from proxy.v2.settings import V2Settings
    from proxy.v2.throttle import FailureThrottle

V2_SETTINGS: web.AppKey[V2Settings] = web.AppKey("v2_settings")
V2_DB: web.AppKey[PaymentsDB] = web.AppKey("v2_db")
V2_GATEWAY: web.AppKey[PaymentGateway] = web.AppKey("v2_gateway")
V2_STATUS: web.AppKey[StatusSource] = web.AppKey("v2_status")
V2_OUTBOX: web.AppKey[Outbox] = web.AppKey("v2_outbox")
V2_THROTTLE: web.AppKey[FailureThrottle] = web.AppKey("v2_throttle")
V2_METRICS: web.AppKey[V2Metrics] = web.AppKey("v2_metrics")
V2_READ_CONFIRMER: web.AppKey[ReadConfirmer] = web.AppKey("v2_read_confirmer")
V2_NOTIFICATION_THROTTLE: web.AppKey[FailureThrottle] = web.AppKey("v2_notification_throttle")
V2_STARTED: web.AppKey[float] = web.AppKey("v2_started")  # time.monotonic() when the app was made (uptime)
V2_ADMIN_SESSIONS: web.AppKey[AdminSessions] = web.AppKey("v2_admin_sessions")

"""Orders that live on the other backend: what makes a cutover, and the way back, lose nothing.

A flip is not atomic for payments in flight. An order created on v1 a second before a tenant moves
to v2 is polled and notified after it, and orders created on v2 during a soak still exist only on
v2 after a rollback. Two rules in the router cover both directions, for a tenant whose orders the
other backend holds: v2 always (it keeps tenants apart by itself), v1 only for the tenants listed
in `upstreams.v1.tenants` (v1 is single-tenant: asking it for another tenant's order would answer
with its own tenant's data).

- Order status reads: when the serving backend answers 404 for `GET /orders/{id}/status`, the other
  backend is asked, and its answer is used if it knows the order. Only 404s cost a second request.
- Midtrans notifications (unless a tenant sets `webhooks: primary`): delivered to the serving
  backend, whose answer goes to Midtrans, and at the same time to the other, so each backend applies
  them to the orders it holds (both deduplicate, so Midtrans' retries change nothing). The copy is
  bounded by COPY_TIMEOUT_S and never changes the answer, with one exception: when v2 answers 503
  "order_not_known_yet" (a grace window ops opened) and the other backend accepted the
  notification, Midtrans is told 200 - the order was v1's, and v1 applied it; the migration's
  follow sync carries the new status to v2.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable
from typing import Final

from aiohttp import web

from proxy.http1.pool import UpstreamError
from proxy.router.forward import Exchanged, UpstreamPools, exchange
from proxy.router.headers import client_response_headers
from proxy.router.metrics import ProxyMetrics
from proxy.router.notification_path import is_notification
from proxy.router.routing import Route

log = logging.getLogger(__name__)

ORDER_STATUS_RE: Final = re.compile(r"/orders/[^/]+/status")
COPY_TIMEOUT_S: Final = 3.0  # Midtrans waits 15 s for an answer; the copy never takes more than this
MAX_ANSWER_BYTES: Final = 64 * 1024
MAX_NOTIFICATION_BYTES: Final = 64 * 1024
NOT_KNOWN_YET: Final = b"order_not_known_yet"


def is_order_read(method: str, path: str) -> bool:
    return method == "GET" and ORDER_STATUS_RE.fullmatch(path) is not None


def copies_webhook(route: Route, method: str, path: str, length: int | None) -> bool:
    return (route.webhooks_to_both and route.other_upstream is not None and is_notification(method, path)
            and length is not None and length <= MAX_NOTIFICATION_BYTES)


def answers_elsewhere(route: Route, method: str, path: str, response: web.StreamResponse) -> bool:
    """Whether the other backend is asked for this answer: a 404 for an order status read, not yet sent."""
    return (response.status == 404 and route.other_upstream is not None and not response.prepared
            and is_order_read(method, path))


async def deliver_to_both(pools: UpstreamPools, metrics: ProxyMetrics, route: Route, head: bytes,
                          request_id: str, body: bytes, primary: Awaitable[web.StreamResponse]
                          ) -> tuple[web.StreamResponse, bool]:
    """A notification to the serving backend (`primary`, its exchange) and a copy to the other, side by
    side; the answer for Midtrans, and whether it is the other backend's (see settle_copy)."""
    answer, copy = await asyncio.gather(primary, ask_other(pools, route, head, body), return_exceptions=True)
    if isinstance(copy, BaseException):  # a defect: every expected failure is a kind already
        log.error("notification copy for tenant %s failed", route.tenant, exc_info=copy)
        copy = "internal"
    # Delivered or not, a primary that failed gets Midtrans to retry.
    instead = settle_copy(metrics, route, request_id, body, copy, None if isinstance(answer, BaseException) else answer)
    if isinstance(answer, BaseException):
        raise answer
    return (answer, False) if instead is None else (instead, True)


async def copy_only(pools: UpstreamPools, metrics: ProxyMetrics, route: Route, head: bytes, request_id: str,
                    body: bytes) -> None:
    """The copy alone, when the serving backend must not see the notification (proxy/router/verify.py):
    counted and logged as any copy; its answer never goes to Midtrans."""
    settle_copy(metrics, route, request_id, body, await ask_other(pools, route, head, body), None)


async def ask_other(pools: UpstreamPools, route: Route, head: bytes, body: bytes | None) -> Exchanged | str:
    """The other backend's whole answer, or the kind of failure.

    A notification copy is awaited beside the primary's exchange (gathered in deliver_to_both), so
    it lives and dies with its request: a client that goes away cancels both."""
    assert route.other_upstream is not None
    try:
        return await asyncio.wait_for(
            exchange(pools.pool_for(route.other_upstream), head, body, max_body_bytes=MAX_ANSWER_BYTES),
            timeout=min(COPY_TIMEOUT_S, route.other_upstream.read_timeout_s))
    except TimeoutError:
        return "timeout"
    except UpstreamError as error:
        return error.kind
    except OSError:
        return "connect"


def _response(answer: Exchanged, request_id: str, backend: str) -> web.Response:
    return web.Response(status=answer.status, body=answer.body,
                        headers=client_response_headers(answer.headers, request_id=request_id, backend=backend))


async def order_elsewhere(pools: UpstreamPools, metrics: ProxyMetrics, route: Route, head: bytes,
                          request_id: str) -> web.Response | None:
    """The other backend's answer for an order the serving one does not know, if it knows it."""
    answer = await ask_other(pools, route, head, None)
    if isinstance(answer, str):
        metrics.order_fallback(route.tenant, "error")
        return None
    if answer.status != 200:
        metrics.order_fallback(route.tenant, "not_found" if answer.status == 404 else "error")
        return None
    metrics.order_fallback(route.tenant, "served")
    return _response(answer, request_id, route.other_backend)


def settle_copy(metrics: ProxyMetrics, route: Route, request_id: str, body: bytes, answer: Exchanged | str,
                primary: web.StreamResponse | None) -> web.Response | None:
    """Count the copy's outcome; returns the answer Midtrans should get instead of the primary's, if any."""
    tenant, other = route.tenant, route.other_backend
    not_held = not isinstance(answer, str) and answer.status == 503 and NOT_KNOWN_YET in answer.body
    if isinstance(answer, str) or (answer.status >= 500 and not not_held):
        metrics.webhook_copy(tenant, other, "failed")
        # Order ids are not secrets; the signature and the rest of the notification stay out.
        log.warning("tenant %s order %s: notification copy to %s failed (%s, request %s)", tenant,
                    _order_id(body), other, answer if isinstance(answer, str) else answer.status, request_id)
        return None
    result = "accepted" if 200 <= answer.status < 300 else "refused"  # 4xx, or an order it does not hold
    metrics.webhook_copy(tenant, other, result)
    if result == "accepted" and isinstance(primary, web.Response) and primary.status == 503 \
            and isinstance(primary.body, bytes) and NOT_KNOWN_YET in primary.body:
        metrics.webhook_copy(tenant, other, "answered")
        return _response(answer, request_id, other)
    return None


def _order_id(body: bytes) -> str:
    try:
        order_id = json.loads(body).get("order_id")
    except (ValueError, AttributeError):
        return "?"
    return str(order_id)[:60] if order_id is not None else "?"

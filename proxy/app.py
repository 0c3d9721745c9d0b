"""Composition root of the router: create_apps() wires config, state, pools, metrics and handlers."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from multidict import CIMultiDictProxy
from prometheus_client import CollectorRegistry

from controlplane.config import ConfigFile
from controlplane.shadow.samples import STATE_SCHEMA
from proxy import keys
from proxy.admin import create_admin_app
from proxy.forward import (
    Capture,
    MidStreamFailure,
    UpstreamFailure,
    UpstreamPools,
    body_framing,
    error_response,
    forward,
)
from proxy.handover import ask_other, copies_webhook, is_order_read, order_elsewhere, settle_copy
from proxy.headers import REQUEST_ID, SHADOW_HEADER, request_id_from, upstream_head
from proxy.locks import LOCK_POLL_S, watch_locks
from proxy.metrics import NO_BACKEND, SHADOW_FLUSH_S, UNKNOWN_TENANT, ProxyMetrics
from proxy.mirror import DROP_REASONS, Mirror, ShadowJob, skip_reason
from proxy.routing import Route, RoutingTable
from proxy.shadow_store import ShadowStore
from proxy.state import RouterState
from proxy.tasks import TaskPool
from proxy.tenant import TENANT_HEADER

RELOAD_POLL_INTERVAL_S = 0.5

log = logging.getLogger(__name__)


async def handle(request: web.Request) -> web.StreamResponse:
    """Resolve the tenant, pick its backend from one config snapshot, forward."""
    app = request.app
    table = app[keys.STATE].table  # the one snapshot this request is routed by
    metrics = app[keys.METRICS]
    started = time.perf_counter()
    headers = request.headers
    peer = request.remote
    rule = table.rule
    trusted = rule.peer_is_trusted(peer)
    request_id = request_id_from(headers.get(REQUEST_ID), trusted)
    header_slug = headers.get(TENANT_HEADER)
    if header_slug is not None and not trusted:
        metrics.untrusted_routing_headers.inc()
    host = headers.get("Host")
    claim = rule.claim(peer=peer, header_slug=header_slug, host=host, query_string=request.query_string)
    route = table.route_for(claim.slug) if claim is not None else None
    if route is None:
        if claim is None:
            message = "this request names no tenant (host, X-Tenant-Slug or ?tenant=)"
        else:
            message = f"no tenant '{claim.slug[:63]}' is configured"
        metrics.observe(UNKNOWN_TENANT, NO_BACKEND, 404, time.perf_counter() - started)
        return error_response(404, "unknown_tenant", message, request_id)

    backend = route.backend
    framing, chunked = body_framing(request)
    head = upstream_head(
        request.method, request.raw_path, request.raw_headers, tenant=route.tenant,
        request_id=request_id, peer=peer, trusted=trusted, scheme=request.scheme, host=host,
        prior_forwarded_for=_joined(headers, "X-Forwarded-For") if trusted else None,
        prior_forwarded_proto=headers.get("X-Forwarded-Proto") if trusted else None,
        prior_forwarded_host=headers.get("X-Forwarded-Host") if trusted else None,
        body_framing=framing,
    )
    pool = app[keys.POOLS].pool_for(route.upstream)
    capture = None
    if route.shadow is not None:
        reason = skip_reason(route, request.method, request.path, request.content_length, request.body_exists)
        if reason is None:
            capture = Capture()
        elif reason in DROP_REASONS:
            metrics.shadow_dropped(route.tenant, reason)
        else:
            metrics.shadow_skipped(route.tenant, reason)
    status = 500
    try:
        instead = None
        if copies_webhook(route, request.method, request.path, request.content_length):
            body = await request.read()
            primary, answer = await asyncio.gather(
                forward(request, pool, head, chunked=chunked, request_id=request_id, backend=backend,
                        capture=capture),
                ask_other(app[keys.POOLS], route, head, body), return_exceptions=True)
            if isinstance(answer, BaseException):  # a defect: every expected failure is a kind already
                log.error("notification copy for tenant %s failed", route.tenant, exc_info=answer)
                answer = "internal"
            # Delivered or not, a primary that failed gets Midtrans to retry.
            instead = settle_copy(metrics, route, request_id, body, answer,
                                  None if isinstance(primary, BaseException) else primary)
            if isinstance(primary, BaseException):
                raise primary
            response = primary
        else:
            response = await forward(request, pool, head, chunked=chunked,
                                     request_id=request_id, backend=backend, capture=capture)
        if instead is not None:
            backend, response, capture = route.other_backend, instead, None
        elif response.status == 404 and route.other_upstream is not None and not response.prepared \
                and is_order_read(request.method, request.path):
            elsewhere = await order_elsewhere(app[keys.POOLS], metrics, route, head, request_id)
            if elsewhere is not None:
                backend, response, capture = route.other_backend, elsewhere, None
        status = response.status
        if capture is not None:
            await _offer_shadow(request, route, head, capture, time.perf_counter() - started, request_id)
        return response
    except UpstreamFailure as failure:
        metrics.upstream_error(route.tenant, backend, failure.kind)
        status = failure.status
        error = "gateway_timeout" if failure.status == 504 else "bad_gateway"
        return error_response(failure.status, error, failure.message, request_id, backend)
    except MidStreamFailure as failure:
        metrics.upstream_error(route.tenant, backend, failure.kind)
        status = failure.response.status
        return failure.response
    except asyncio.CancelledError:
        # The client went away: aiohttp cancels the handler, which closes the upstream request.
        metrics.upstream_error(route.tenant, backend, "client_disconnect")
        status = 499
        raise
    except Exception:
        metrics.upstream_error(route.tenant, backend, "internal")
        raise
    finally:
        metrics.observe(route.tenant, backend, status, time.perf_counter() - started)


_SHADOW_LINE = f"{SHADOW_HEADER}: 1\r\n".encode()


async def _offer_shadow(request: web.Request, route: Route, head: bytes, capture: Capture, elapsed_s: float,
                        request_id: str) -> None:
    """Queue the shadow copy (never waits); the comparison needs the primary's whole answer."""
    metrics = request.app[keys.METRICS]
    if capture.body is None:
        metrics.shadow_dropped(route.tenant, "response_streamed")
        return
    spec = route.shadow
    assert spec is not None
    mirror = request.app[keys.MIRROR]
    method = request.method
    body = await request.read() if request.body_exists else None  # already read: aiohttp keeps it
    mirror.offer(ShadowJob(
        route=route, endpoint=mirror.endpoint(route.tenant, method, request.path), method=method,
        shadow_head=head[:-2] + _SHADOW_LINE + b"\r\n", primary_head=head, request_id=request_id, body=body,
        primary_status=capture.status, primary_body=capture.body, primary_elapsed_s=elapsed_s,
        learn_noise=method in ("GET", "HEAD") and random.random() < spec.noise_sample_rate))


async def _flush_shadow_metrics(metrics: ProxyMetrics, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        metrics.flush_shadow()


def _joined(headers: CIMultiDictProxy[str], name: str) -> str | None:
    values = headers.getall(name, ())
    return ", ".join(values) if values else None


def create_apps(
    config_path: str | Path,
    registry: CollectorRegistry,
    *,
    reload_interval_s: float = RELOAD_POLL_INTERVAL_S,
    state_database_url: str | None = None,
    state_schema: str = STATE_SCHEMA,
    lock_poll_s: float = LOCK_POLL_S,
    shadow_flush_s: float = SHADOW_FLUSH_S,
) -> tuple[web.Application, web.Application]:
    """The proxy app and its admin app. Raises ConfigError if the routing file is unusable."""
    metrics = ProxyMetrics(registry)
    tasks = TaskPool("router", limit=64,
                     on_drop=lambda reason: metrics.background_dropped.labels("router", reason).inc())
    pools = UpstreamPools(tasks)

    def on_swap(table: RoutingTable) -> None:
        upstreams = set(table.config.upstreams.values())
        pools.keep_only(upstreams)
        mirror.reconfigure(table.config.shadow_limits, upstreams)  # created below; swaps come later

    state = RouterState(ConfigFile(config_path), metrics, on_swap=on_swap)
    store = ShadowStore(state_database_url, state_schema) if state_database_url else None
    mirror = Mirror(state.table.config.shadow_limits, metrics, store)

    app = web.Application(handler_args={"max_field_size": 16384})
    app[keys.STATE] = state
    app[keys.METRICS] = metrics
    app[keys.REGISTRY] = registry
    app[keys.POOLS] = pools
    app[keys.TASKS] = tasks
    app[keys.MIRROR] = mirror

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        tasks.spawn(state.watch(reload_interval_s), name="config-watch")
        tasks.spawn(_flush_shadow_metrics(metrics, shadow_flush_s), name="shadow-metrics")
        if store is not None:
            await store.open()
            tasks.spawn(store.run(), name="shadow-store")
        if state_database_url:
            tasks.spawn(watch_locks(state, metrics, state_database_url, state_schema, lock_poll_s),
                        name="rollout-locks")
        yield
        state.draining = True
        await mirror.close()
        metrics.flush_shadow()
        if store is not None:
            await store.close()
        await tasks.close(timeout_s=0)
        await pools.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app, create_admin_app(state, registry)

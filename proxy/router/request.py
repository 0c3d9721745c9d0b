"""The path of one request through the router, as the steps handle() takes them:

    resolve    who asks: the tenant claim, the request id, whether the peer is a trusted proxy
    hold       a write waits while a cutover holds its tenant's writes (proxy/router/holds.py)
    route      the claim -> a Route, from the one config snapshot this request is routed by
    forward    the primary exchange with the serving backend (proxy/router/forward.py)
    hand over  what the other backend must also know, or may answer instead (proxy/router/handover.py)
    witness    an order v1 created or answered for, sampled for the cutover preflight (proxy/router/v1_orders.py)
    shadow     the primary's answer captured, and a copy offered to the mirror (proxy/router/mirror.py)
    account    the request's metrics, and every failure mapped to its answer, in one place
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, cast

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from controlplane.config.model import Backend
from controlplane.config.tenant import TENANT_HEADER, TenantClaim, TenantRule
from proxy.router import keys
from proxy.router.forward import Capture, ClientFailure, MidStreamFailure, UpstreamFailure, relay
from proxy.router.handover import answers_elsewhere, copies_webhook, copy_only, deliver_to_both, order_elsewhere
from proxy.router.headers import BACKEND_HEADER, body_framing, request_id_from, upstream_head
from proxy.router.holds import READ_METHODS, HoldFull
from proxy.router.metrics import NO_BACKEND, UNKNOWN_TENANT, ProxyMetrics
from proxy.router.mirror import DROP_REASONS, ShadowJob, answer_skip_reason, route_class, skip_reason
from proxy.router.routing import Route
from proxy.router.v1_orders import MAX_CREATE_BODY, seen_as
from proxy.serving.wire import REQUEST_ID, SHADOW_HEADER


async def handle(request: web.Request) -> web.StreamResponse:
    """resolve -> hold -> route -> forward, with the hand over -> witness -> shadow; `failed` and the
    `finally` account."""
    app = request.app
    table = app[keys.STATE].table  # the one snapshot this request is routed by
    metrics = app[keys.METRICS]
    started = time.perf_counter()
    caller = resolve(request, table.rule, metrics)
    held = await hold(request, caller, metrics)
    if isinstance(held, web.Response):
        return held
    if held:
        table = app[keys.STATE].table  # released: routed by the table of now (the flip, if there was one)
    route = table.route_for(caller.claim.slug) if caller.claim is not None else None
    if route is None:
        return unknown_tenant(metrics, caller, started)
    head, chunked = upstream_request(request, route, caller)
    passage = Passage(request, route, caller.request_id, head, chunked, shadow_capture(request, route, metrics),
                      route.backend, started)
    status, outcome = 500, cast(str | None, "internal")  # unless something answers: a defect
    # A write in flight: a hold begun from now on is confirmed only once it finished. Nothing since
    # the hold check awaited, so no hold can have begun in between.
    writing = in_flight(request, caller)
    try:
        response = await hand_over(passage, forward)
        status, outcome = response.status, passage.refused
        await witness(passage, response.status)
        if passage.capture is not None:
            await shadow(passage, response)
        return response
    except BaseException as failure:
        status, outcome, answer = failed(metrics, passage, failure)
        if answer is None:
            raise
        return answer
    finally:
        if writing is not None and (holds := app[keys.HOLDS]) is not None:
            holds.leave(writing)
        # Only what a backend answered (or failed to) counts for it: what the router did is apart.
        if outcome is None:
            metrics.observe(route.tenant, passage.backend, status, time.perf_counter() - started,
                            route_class(request.method, request.path))
        else:
            metrics.router_outcome(route.tenant, passage.backend, outcome)


# -- resolve -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Caller:
    """Who asks: the TCP peer, whether it is a trusted proxy, the request id, the tenant it names."""

    peer: str | None
    trusted: bool
    request_id: str
    host: str | None
    claim: TenantClaim | None


def resolve(request: web.Request, rule: TenantRule, metrics: ProxyMetrics) -> Caller:
    headers = request.headers
    peer = request.remote
    trusted = rule.peer_is_trusted(peer)
    request_id = request_id_from(headers.get(REQUEST_ID), trusted)
    header_slug = headers.get(TENANT_HEADER)
    if header_slug is not None and not trusted:
        metrics.untrusted_routing_headers.inc()
    host = headers.get("Host")
    claim = rule.claim(peer=peer, header_slug=header_slug, host=host, query_string=request.query_string)
    return Caller(peer, trusted, request_id, host, claim)


# -- hold ------------------------------------------------------------------------------------------


async def hold(request: web.Request, caller: Caller, metrics: ProxyMetrics) -> web.Response | bool:
    """Wait while a cutover holds the tenant's writes: True when the request waited, a 503 when the
    hold already keeps as many writes as it may (Midtrans and the funnel retry), False otherwise."""
    holds = request.app[keys.HOLDS]
    if holds is None or caller.claim is None or request.method in READ_METHODS or not holds.holds(
            caller.claim.slug):
        return False
    try:
        await holds.wait(caller.claim.slug)
    except HoldFull:
        metrics.router_outcome(caller.claim.slug, NO_BACKEND, "hold_full")
        answer = error_response(503, "write_held", "this tenant is moving between backends and its writes are "
                                "held for a moment; try again in a second", caller.request_id)
        answer.headers["Retry-After"] = "1"
        return answer
    return True


def in_flight(request: web.Request, caller: Caller) -> str | None:
    """Count a write of a known tenant as in flight (the tenant, to `leave` when it is done)."""
    holds = request.app[keys.HOLDS]
    if holds is None or caller.claim is None or request.method in READ_METHODS:
        return None
    holds.enter(caller.claim.slug)
    return caller.claim.slug


# -- route -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Passage:
    """One routed request on its way: what the steps after `route` read, and who answers it."""

    request: web.Request
    route: Route
    request_id: str
    head: bytes  # the upstream request's head, built once (the copies reuse it)
    chunked: bool
    capture: Capture | None  # set when the request is mirrored; cleared when the other backend answers
    backend: Backend  # the serving backend, or the other one when it answered instead
    started: float
    refused: str | None = None  # the router answered itself (a notification it refused): no backend's answer


def upstream_request(request: web.Request, route: Route, caller: Caller) -> tuple[bytes, bool]:
    """The head the backends get (the router's headers, the client's cleaned) and whether the body is chunked."""
    headers = request.headers
    trusted = caller.trusted
    framing, chunked = body_framing(request.content_length) if request.body_exists else (b"", False)
    head = upstream_head(
        request.method, request.raw_path, request.raw_headers, tenant=route.tenant,
        request_id=caller.request_id, peer=caller.peer, trusted=trusted, scheme=request.scheme,
        host=caller.host,
        prior_forwarded_for=_joined(headers, "X-Forwarded-For") if trusted else None,
        prior_forwarded_proto=headers.get("X-Forwarded-Proto") if trusted else None,
        prior_forwarded_host=headers.get("X-Forwarded-Host") if trusted else None,
        body_framing=framing,
    )
    return head, chunked


def _joined(headers: CIMultiDictProxy[str], name: str) -> str | None:
    values = headers.getall(name, ())
    return ", ".join(values) if values else None


# -- forward -----------------------------------------------------------------------------------


async def forward(passage: Passage) -> web.StreamResponse:
    """The primary exchange: the serving backend's answer, relayed (streamed when it is large)."""
    request, route = passage.request, passage.route
    table, pools = request.app[keys.STATE].table, request.app[keys.POOLS]
    limits, spec = table.config.limits, route.upstream
    # Each tenant holds at most its share of a backend it shares (a tenant alone on it: the whole pool).
    slots = limits.tenant_slots(spec.pool_size)
    share = (pools.share_for(spec, route.tenant, slots)
             if slots < spec.pool_size and table.tenants_on.get(route.backend, 0) > 1 else None)
    return await relay(request, pools.pool_for(spec), passage.head,
                       chunked=passage.chunked, request_id=passage.request_id, backend=route.backend,
                       capture=passage.capture, share=share, body_timeout_s=limits.body_timeout_s)


# -- hand over ---------------------------------------------------------------------------------


async def hand_over(passage: Passage, primary: Callable[[Passage], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
    """Run the primary exchange with what the other backend must know, or may answer instead: a Midtrans
    notification goes to both, and an order status the serving backend does not know is asked of the other."""
    request, route = passage.request, passage.route
    gate = request.app[keys.NOTIFICATION_GATE]
    copies = copies_webhook(route, request.method, request.path, request.content_length)
    if gate.applies(request.method, request.path):
        verdict = await gate.verify(request, route.tenant)
        if isinstance(verdict, web.Response):
            passage.capture, passage.refused = None, "notification_refused"  # nothing to compare
            return verdict
        if verdict.keep_from_v1 and route.backend == "v1":
            gate.withheld(route.tenant, verdict.order_id, "primary delivery")
            return await answer_for_v1(passage, copies)
        if verdict.keep_from_v1 and copies:  # the copy would go to v1: v2, serving, applies it alone
            gate.withheld(route.tenant, verdict.order_id, "copy")
            copies = False
    if copies:
        body = await request.read()
        app = request.app
        response, theirs = await deliver_to_both(app[keys.POOLS], app[keys.METRICS], route, passage.head,
                                                 passage.request_id, body, primary(passage))
    else:
        response = await primary(passage)
        if not answers_elsewhere(route, request.method, request.path, response):
            return response
        app = request.app
        elsewhere = await order_elsewhere(app[keys.POOLS], app[keys.METRICS], route, passage.head,
                                          passage.request_id)
        theirs = elsewhere is not None
        if elsewhere is not None:
            response = elsewhere
    if theirs:
        # The other backend's answer is not the primary's: there is nothing to compare a shadow with.
        passage.backend, passage.capture = route.other_backend, None
    return response


async def answer_for_v1(passage: Passage, copies: bool) -> web.Response:
    """A notification v1 must not see, for a tenant v1 serves: the copy still goes to v2 (when copies go
    there), and Midtrans gets the answer v1 would have given, so it does not resend what v1 must never
    see. The router answered: no backend's answer, nothing to compare with a shadow."""
    request, route = passage.request, passage.route
    passage.capture, passage.refused = None, "notification_withheld"
    if copies:
        app = request.app  # the body was read (and bounded) by the gate already
        await copy_only(app[keys.POOLS], app[keys.METRICS], route, passage.head, passage.request_id,
                        await request.read())
    return web.Response(text="OK", headers={REQUEST_ID: passage.request_id})


# -- witness -----------------------------------------------------------------------------------


async def witness(passage: Passage, status: int) -> None:
    """Sample an order v1 created or answered for (never waits: the write is batched elsewhere)."""
    request = passage.request
    seen = request.app[keys.V1_ORDERS]
    if seen is None or passage.backend != "v1" or passage.refused is not None:
        return
    how = seen_as(request.method, request.path, status)
    if how is None or not seen.wants(passage.route.tenant):
        return
    if how == "answered":
        seen.add(passage.route.tenant, how, request.path)
    elif request.content_length is not None and request.content_length <= MAX_CREATE_BODY:
        seen.add(passage.route.tenant, how, await request.read())  # read whole by forward: no wait


# -- shadow ------------------------------------------------------------------------------------


def shadow_capture(request: web.Request, route: Route, metrics: ProxyMetrics) -> Capture | None:
    """Where this request is mirrored, the place for the primary's answer (forward fills it in)."""
    if route.shadow is None:
        return None
    reason = skip_reason(route, request.method, request.path, request.content_length, request.body_exists)
    if reason is None:
        return Capture()
    if reason in DROP_REASONS:
        metrics.shadow_dropped(route.tenant, reason)
    else:
        metrics.shadow_skipped(route.tenant, reason)
    return None


_SHADOW_LINE = f"{SHADOW_HEADER}: 1\r\n".encode()


async def shadow(passage: Passage, response: web.StreamResponse) -> None:
    """Queue the shadow copy (never waits); the comparison needs the primary's whole answer."""
    request, route, capture = passage.request, passage.route, passage.capture
    assert capture is not None and route.shadow is not None
    elapsed_s = time.perf_counter() - passage.started
    mirror = request.app[keys.MIRROR]
    method, head = request.method, passage.head
    endpoint = mirror.endpoint(route.tenant, method, request.rel_url.raw_path)
    if (skipped := answer_skip_reason(response.status, endpoint, request.path)) is not None:
        request.app[keys.METRICS].shadow_skipped(route.tenant, skipped)
        return
    if capture.body is None:
        request.app[keys.METRICS].shadow_dropped(route.tenant, "response_streamed")
        return
    body = await request.read() if request.body_exists else None  # already read: aiohttp keeps it
    mirror.offer(ShadowJob(
        route=route, endpoint=endpoint, method=method,
        shadow_head=head[:-2] + _SHADOW_LINE + b"\r\n", primary_head=head, request_id=passage.request_id,
        body=body, primary_status=capture.status, primary_body=capture.body, primary_elapsed_s=elapsed_s,
        learn_noise=method in ("GET", "HEAD") and random.random() < route.shadow.noise_sample_rate))


# -- account -----------------------------------------------------------------------------------


def unknown_tenant(metrics: ProxyMetrics, caller: Caller, started: float) -> web.Response:
    if caller.claim is None:
        message = "this request names no tenant (host, X-Tenant-Slug or ?tenant=)"
    else:
        message = f"no tenant '{caller.claim.slug[:63]}' is configured"
    metrics.observe(UNKNOWN_TENANT, NO_BACKEND, 404, time.perf_counter() - started)
    return error_response(404, "unknown_tenant", message, caller.request_id)


# Failures of the router's own resources, not of the backend: a full pool, the tenant's full share.
_ROUTER_KINDS: Final = frozenset({"pool_timeout", "tenant_busy"})
_ERROR_OF_STATUS: Final = {503: "tenant_busy", 504: "gateway_timeout"}


def failed(metrics: ProxyMetrics, passage: Passage, failure: BaseException
           ) -> tuple[int, str | None, web.StreamResponse | None]:
    """The status a failed request is counted with, the router outcome it is (None: the backend's
    failure, counted against it), and the answer it gets (None: the failure propagates)."""
    tenant, backend = passage.route.tenant, passage.backend
    if isinstance(failure, UpstreamFailure):  # no answer head came: the router answers 502, 503 or 504 itself
        metrics.upstream_error(tenant, backend, failure.kind)
        error = _ERROR_OF_STATUS.get(failure.status, "bad_gateway")
        outcome = failure.kind if failure.kind in _ROUTER_KINDS else None
        return failure.status, outcome, error_response(failure.status, error, failure.message, passage.request_id,
                                                       backend)
    if isinstance(failure, MidStreamFailure):  # the answer was cut short: the client connection is aborted
        metrics.upstream_error(tenant, backend, failure.kind)
        return 502, None, failure.response  # the backend failed, whatever status it had begun with
    if isinstance(failure, ClientFailure):  # the client went away or was too slow: no one's error but its own
        if failure.response is not None:
            return 499, failure.outcome, failure.response
        message = "the request body stopped arriving"
        return 408, failure.outcome, error_response(408, "request_timeout", message, passage.request_id)
    if isinstance(failure, asyncio.CancelledError):
        # The client went away: aiohttp cancels the handler, which closes the upstream request.
        metrics.upstream_error(tenant, backend, "client_disconnect")
        return 499, "client_disconnect", None
    if isinstance(failure, Exception):
        metrics.upstream_error(tenant, backend, "internal")
    return 500, "internal", None


def error_response(status: int, error: str, message: str, request_id: str,
                   backend: str | None = None) -> web.Response:
    headers = CIMultiDict({REQUEST_ID: request_id})
    if backend is not None:
        headers[BACKEND_HEADER] = backend
    body = json.dumps({"success": False, "error": error, "message": message, "requestId": request_id})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)

"""v1's admin page on v2, per tenant: `POST /admin/login`, `GET /admin/orders`, `PUT /admin/orders/{orderId}`.

- Sign-in: the tenant's admin user and password (`dualstack tenant set SLUG --admin-user NAME`,
  stored as an scrypt hash in tenant_secrets) give a short-lived HS256 token signed with the
  tenant's own session key (jwt.py). Failed sign-ins are throttled per tenant and client, and
  counted; the KDF runs in a thread, a few at a time, and only after the throttle said yes.
- Listing: v1's order rows (`id`, `customer_name`, `email`, `phone`, `amount`, `payment_method`,
  `status`, `created_at`, `updated_at`), newest first, a bounded page at a time.
- Update: v1 stored any status string it was given. Here a status is one of v2's (v1's upper-case
  spellings accepted): anything else is a 400, a move the status-precedence rule does not allow
  (controlplane/order_status.py `may_move`) a 409; an allowed one is made by the webhook's own
  step and recorded in payment_events as `manual` with the admin user as actor.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web
from psycopg.rows import DictRow

from controlplane.admin_password import MAX_PASSWORD_CHARS, verify_password
from controlplane.order_status import ALLOWED_MOVES, ORDER_STATUSES, OrderStatus, may_move
from proxy.v2 import jwt, keys
from proxy.v2.db import AdminLogin, TenantRecord
from proxy.v2.request_input import json_object, order_id_param, query_number, text_field
from proxy.v2.resolve import require_tenant
from proxy.v2.responses import JsonError
from proxy.v2.settle import Conn, apply_manual, lock_order
from proxy.v2.status import V1_SPELLING
from proxy.v2.throttle import FailureThrottle, client_address
from proxy.v2.webhooks import _after_commit

log = logging.getLogger(__name__)

SESSION_TTL_S: Final = 15 * 60
LOGIN_BODY_BYTES: Final = 4096
UPDATE_BODY_BYTES: Final = 1024
MAX_PAGE_SIZE: Final = 100
MAX_PAGE: Final = 1000  # deeper than 100,000 orders back is a report, not a page
_STATUS_NAMES: Final[dict[str, OrderStatus]] = {
    **{s: s for s in ORDER_STATUSES}, **{v1.lower(): s for s, v1 in V1_SPELLING.items()}}
_ROW: Final = ("SELECT order_id, customer_name, email, phone, gross_amount, payment_method, payment_status, "
               "created_at, updated_at FROM orders")


class AdminSessions:
    """Sign-in policy of the admin page: the token's lifetime and clock, the failure throttle and
    how many password checks (16 MiB and tens of milliseconds each) run at once."""

    def __init__(self, *, ttl_s: int = SESSION_TTL_S, clock: Callable[[], float] = time.time,
                 throttle: FailureThrottle | None = None, concurrent_checks: int = 2) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        # A password is weaker than the 24-byte admin token: fewer guesses than its throttle allows.
        self.throttle = throttle or FailureThrottle(per_client=5, per_tenant=50)
        self._checks = asyncio.Semaphore(concurrent_checks)

    async def check(self, login: AdminLogin | None, user: str, password: str,
                    still_allowed: Callable[[], bool]) -> bool | None:
        """True: the credential is right; False: wrong; None: throttled while waiting for a turn."""
        async with self._checks:
            if not still_allowed():  # concurrent guesses wait here, so at most a turn's worth slip past
                return None
            stored = login.password_scrypt.reveal() if login is not None else None
            right = await asyncio.to_thread(verify_password, password, stored)
        return right and login is not None and _same(user, login.user)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _client(request: web.Request) -> str:
    return client_address(request.remote, request.headers.getall("X-Forwarded-For", ()),
                          request.app[keys.V2_SETTINGS].rule.peer_is_trusted)


def _throttled(request: web.Request, tenant: TenantRecord, wait_s: float) -> JsonError:
    request.app[keys.V2_METRICS].admin_login_refused.labels(tenant.slug, "throttled").inc()
    refused = JsonError(429, "too_many_attempts", "too many failed sign-ins; try again later")
    refused.response.headers["Retry-After"] = str(math.ceil(wait_s))
    return refused


async def admin_login(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    sessions = request.app[keys.V2_ADMIN_SESSIONS]
    client = _client(request)
    if (wait_s := sessions.throttle.wait_s(tenant.slug, client)) > 0:
        raise _throttled(request, tenant, wait_s)
    body = await json_object(request, LOGIN_BODY_BYTES)
    user, password = text_field(body, "username", 200), text_field(body, "password", MAX_PASSWORD_CHARS)
    login = tenant.admin_login if tenant.status != "cancelled" else None
    right = await sessions.check(login, user, password, lambda: sessions.throttle.wait_s(tenant.slug, client) <= 0)
    if right is None:
        raise _throttled(request, tenant, sessions.throttle.wait_s(tenant.slug, client))
    if not right or login is None:
        request.app[keys.V2_METRICS].admin_login_refused.labels(tenant.slug, "failed").inc()
        if sessions.throttle.failed(tenant.slug, client):  # logged once as it starts, not once per guess
            log.warning("admin sign-in guesses for tenant %s from %s: throttled", tenant.slug, client)
        raise JsonError(401, "invalid_credentials", "Invalid credentials")
    log.info("tenant %s: admin %s signed in from %s", tenant.slug, login.user, client)
    token = jwt.issue(login.user, str(tenant.id), bytes.fromhex(login.session_key.reveal()),
                      now=sessions.clock(), ttl_s=sessions.ttl_s)
    return web.json_response({"success": True, "token": token, "tokenType": "Bearer", "expiresIn": sessions.ttl_s,
                              "user": {"username": login.user}})


def _session(request: web.Request, tenant: TenantRecord) -> jwt.Claims:
    """The signed-in admin of this tenant, or 401."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    login = tenant.admin_login
    try:
        if not token or login is None:
            raise jwt.TokenRefused("malformed", "sign in first (POST /admin/login), then send the token as Bearer")
        claims = jwt.verify(token, bytes.fromhex(login.session_key.reveal()), tenant=str(tenant.id),
                            now=request.app[keys.V2_ADMIN_SESSIONS].clock())
        if not _same(claims.subject, login.user):
            raise jwt.TokenRefused("signature", "the token's user cannot sign in any more")
    except jwt.TokenRefused as refused:
        reason = "missing" if not token else refused.reason
        request.app[keys.V2_METRICS].admin_session_refused.labels(tenant.slug, reason).inc()
        raise JsonError(401, "unauthorized", str(refused)) from None
    return claims


def _v1_row(row: DictRow) -> dict[str, Any]:
    return {"id": row["order_id"], "customer_name": row["customer_name"], "email": row["email"],
            "phone": row["phone"], "amount": row["gross_amount"], "payment_method": row["payment_method"],
            "status": row["payment_status"], "created_at": row["created_at"].isoformat(),
            "updated_at": row["updated_at"].isoformat()}


def _status(value: Any, what: str) -> OrderStatus:
    status = _STATUS_NAMES.get(value.strip().lower()) if isinstance(value, str) and len(value) <= 40 else None
    if status is None:
        raise JsonError(400, "invalid_status", f"{what} must be one of {', '.join(ORDER_STATUSES)} "
                        "(or v1's PENDING_PAYMENT, PAID, FAILED, EXPIRED, REFUNDED)")
    return status


async def admin_orders(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    _session(request, tenant)
    page = query_number(request, "page", 1, 1, MAX_PAGE)
    limit = query_number(request, "limit", 50, 1, MAX_PAGE_SIZE)
    status = _status(request.query["status"], "status") if "status" in request.query else None
    where, params = (" WHERE payment_status = %s", [status]) if status else ("", [])
    async with request.app[keys.V2_DB].tenant_tx(tenant.id) as conn:
        cursor = await conn.execute(f"{_ROW}{where} ORDER BY created_at DESC, order_id LIMIT %s OFFSET %s",
                                    (*params, limit, (page - 1) * limit))
        rows = await cursor.fetchall()
        counted = await (await conn.execute(f"SELECT count(*) AS n FROM orders{where}", params)).fetchone()
    total = int(counted["n"]) if counted else 0
    return web.json_response({"success": True, "orders": [_v1_row(r) for r in rows], "pagination": {
        "page": page, "limit": limit, "total": total, "pages": math.ceil(total / limit)}})


async def _read_row(conn: Conn, order_id: str) -> dict[str, Any]:
    row = await (await conn.execute(f"{_ROW} WHERE order_id = %s", (order_id,))).fetchone()
    assert row is not None  # locked in this transaction; the service deletes no order
    return _v1_row(row)


async def admin_update_order(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    claims = _session(request, tenant)
    order_id = order_id_param(request)
    target = _status((await json_object(request, UPDATE_BODY_BYTES)).get("status"), "status")
    async with request.app[keys.V2_DB].tenant_tx(tenant.id) as conn:
        order = await lock_order(conn, order_id)
        if order is None:  # another tenant's order is invisible here, so it is a 404 too
            raise JsonError(404, "Order not found", "no such order", orderId=order_id)
        current = order["payment_status"]
        if current == target:
            return web.json_response({"success": True, "changed": False, "order": await _read_row(conn, order_id)})
        if not may_move(current, target):
            allowed = sorted(ALLOWED_MOVES.get(current, frozenset()))
            raise JsonError(409, "transition_not_allowed",
                            f"an order that is {current} cannot be set to {target}; allowed: "
                            f"{', '.join(allowed) or 'none (final)'}", orderId=order_id, currentStatus=current,
                            allowed=allowed)
        wrote_outbox = await apply_manual(conn, tenant, order_id, order, target, actor=claims.subject)
        row = await _read_row(conn, order_id)
    _after_commit(request, tenant, wrote_outbox)
    return web.json_response({"success": True, "changed": True, "from": current, "order": row})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/admin/login", admin_login)
    app.router.add_get("/admin/orders", admin_orders)
    app.router.add_put("/admin/orders/{orderId}", admin_update_order)

"""v1's admin routes, as its admin page calls them: `POST /admin/login` -> a JWT (HS256, 24 h),
`GET /admin/orders`, and `PUT /admin/orders/:orderId`, which sets any status string it is given."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from standins.legacy_v1.express import json_body, send_json
from standins.legacy_v1.stores import OrderStore

if TYPE_CHECKING:
    from standins.legacy_v1.express import ExpressRouter

TOKEN_LIFETIME_S = 24 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Admin:
    def __init__(self, store: OrderStore, *, password: str | None, username: str = "admin") -> None:
        self.store = store
        self.username = username
        self.password = password  # None: nobody can log in
        self.secret = secrets.token_bytes(32)

    def token(self) -> str:
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        now = int(time.time())
        body = _b64(json.dumps({"username": self.username, "iat": now, "exp": now + TOKEN_LIFETIME_S}).encode())
        return f"{head}.{body}.{_b64(hmac.new(self.secret, f'{head}.{body}'.encode(), hashlib.sha256).digest())}"

    def authorized(self, request: web.Request) -> bool:
        parts = request.headers.get("Authorization", "").removeprefix("Bearer ").split(".")
        if len(parts) != 3:
            return False
        expected = _b64(hmac.new(self.secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            return False
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return isinstance(claims, dict) and int(claims.get("exp", 0)) > time.time()

    async def login(self, request: web.Request, _: dict[str, str]) -> web.Response:
        body = await json_body(request)
        if isinstance(body, web.Response):
            return body
        if self.password is None or not (
                hmac.compare_digest(str(body.get("username", "")).encode(), self.username.encode())
                & hmac.compare_digest(str(body.get("password", "")).encode(), self.password.encode())):
            return send_json({"success": False, "error": "Invalid credentials"}, 401)
        return send_json({"success": True, "token": self.token()})

    async def list_orders(self, request: web.Request, _: dict[str, str]) -> web.Response:
        if not self.authorized(request):
            return send_json({"error": "Access denied"}, 401)
        orders: list[dict[str, Any]] = [
            {"id": o.id, "customer_name": o.customer_name, "email": o.email, "amount": o.amount, "status": o.status,
             "created_at": o.created_at} for o in await self.store.orders()]
        return send_json({"success": True, "orders": json.loads(json.dumps(orders, default=str))})

    async def update_order(self, request: web.Request, params: dict[str, str]) -> web.Response:
        if not self.authorized(request):
            return send_json({"error": "Access denied"}, 401)
        body = await json_body(request)
        if isinstance(body, web.Response):
            return body
        await self.store.set_status(params["orderId"], str(body.get("status")))  # any string: no validation
        return send_json({"success": True})

    def add_routes(self, router: ExpressRouter) -> None:
        router.add("POST", "/admin/login", self.login)
        router.add("GET", "/admin/orders", self.list_orders)
        router.add("PUT", "/admin/orders/:orderId", self.update_order)

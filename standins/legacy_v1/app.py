"""v1's payment API as the original Node service answers it, in the generation its store says.

What is wrong with v1 is reproduced on purpose (dualstack must protect v1 from it, not assume it away):
notifications are applied without any signature or amount check; a duplicate orderId is a 500 (the
database's duplicate-key error); a non-numeric amount is a 500; Snap is called before the order is
written. The SQLite generation has neither `GET /orders/:id/status` nor `/health`; the PostgreSQL one
answers the status with a lower-case status, the amount as a string and no customerName, and when
Midtrans fails or hangs (10 s) answers `{"success": true}` without a payment link, stores the order,
and skips Midtrans for the next 30 s (its circuit breaker)."""

from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import web

from standins.legacy_v1.admin import Admin
from standins.legacy_v1.express import ExpressRouter, express_app, json_body, send_json, send_text
from standins.legacy_v1.mail import Mailer, MailFailed
from standins.legacy_v1.stores import NewOrder, OrderStore, StoreError

SPELLINGS = {"lower": {"pending": "pending", "paid": "paid"}, "upper": {"pending": "PENDING_PAYMENT", "paid": "PAID"}}
PAID_ON = {"settlement", "capture"}  # capture with fraud_status deny too; expire and the rest change nothing
EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")  # express-validator's isEmail wants a dotted domain
SNAP_TIMEOUT_S = 10.0
BREAKER_RESET_S = 30.0


def validation_details(body: dict[str, Any]) -> list[str]:
    """v1's checks: present, not well formed (a blank name passes; a non-numeric amount reaches the database)."""
    def given(key: str) -> bool:
        value = body.get(key)
        return isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value) != ""

    amount = body.get("amount")
    details = []
    if not given("orderId"):
        details.append("Order ID is required")
    if not given("amount") or (isinstance(amount, (int, float)) and amount <= 0):
        details.append("Valid amount is required")
    if not given("email") or not EMAIL.fullmatch(str(body["email"])):
        details.append("Valid email is required")
    if not given("phone"):
        details.append("Phone number is required")
    if not given("name"):
        details.append("Name is required")
    return details


class LegacyV1:
    def __init__(self, store: OrderStore, *, server_key: str, snap_url: str, notification_url: str | None = None,
                 spelling: str = "lower", snap_timeout_s: float = SNAP_TIMEOUT_S,
                 breaker_reset_s: float = BREAKER_RESET_S, admin: Admin | None = None,
                 mailer: Mailer | None = None) -> None:
        self.store = store
        self.server_key = server_key
        self.snap_url = snap_url
        self.notification_url = notification_url
        self.status = SPELLINGS[spelling]
        self.snap_timeout_s = snap_timeout_s
        self.breaker_reset_s = breaker_reset_s
        self.breaker_open_until = 0.0
        self.admin = admin or Admin(store, password=None)
        self.mailer = mailer  # the SQLite generation's awaited emails (None: no SMTP configured, none sent)
        self.started = time.monotonic()
        self._session: aiohttp.ClientSession | None = None

    @property
    def postgresql(self) -> bool:
        return self.store.generation == "postgresql"

    async def snap(self, order_id: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Snap's token and redirect_url, or None when Midtrans failed, hung, or the breaker skipped it."""
        if time.monotonic() < self.breaker_open_until:
            return None
        headers = {"Authorization": "Basic " + base64.b64encode(f"{self.server_key}:".encode()).decode(),
                   "Accept": "application/json"}
        if self.notification_url:
            headers["X-Override-Notification"] = self.notification_url
        snap_body = {"transaction_details": {"order_id": order_id, "gross_amount": body["amount"]},
                     "customer_details": {"first_name": str(body["name"]), "email": str(body["email"]),
                                          "phone": str(body["phone"])}}
        assert self._session is not None
        try:
            async with self._session.post(self.snap_url, json=snap_body, headers=headers,
                                          timeout=aiohttp.ClientTimeout(total=self.snap_timeout_s)) as response:
                snap = await response.json(content_type=None)
                if response.status == 201 and isinstance(snap, dict) and "token" in snap:
                    return snap
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
        if self.postgresql:  # only that generation has the breaker
            self.breaker_open_until = time.monotonic() + self.breaker_reset_s
        return None

    async def create(self, request: web.Request, _: dict[str, str]) -> web.Response:
        body = await json_body(request)
        if isinstance(body, web.Response):
            return body
        details = validation_details(body)
        if details:
            return send_json({"error": "Validation Error", "message": "Invalid input data", "details": details}, 400)
        order_id = str(body["orderId"])
        snap = await self.snap(order_id, body)
        if snap is None and not self.postgresql:
            return send_json({"success": False, "error": "Payment creation failed"}, 500)
        token, url = (str(snap["token"]), str(snap["redirect_url"])) if snap else (None, None)
        order = NewOrder(order_id, str(body["name"]), str(body["email"]), str(body["phone"]), str(body["amount"]),
                         self.status["pending"], token, url)
        try:
            await self.store.insert(order)
        except StoreError as exc:
            return send_json({"success": False, "error": "Internal server error", "message": str(exc)}, 500)
        if snap is None:
            return send_json({"success": True})
        failed = await self.mail(order.email, f"Order {order_id} received")
        if failed is not None:
            return failed
        return send_json({"success": True, "paymentUrl": snap["redirect_url"], "token": snap["token"]})

    async def order_status(self, _: web.Request, params: dict[str, str]) -> web.Response:
        found = await self.store.orders(params["orderId"])
        if not found:
            return send_json({"success": False, "error": "Order not found"}, 404)
        order = found[0]
        return send_json({"success": True, "order": {"id": order.id, "status": order.status,
                                                     "totalAmount": f"{Decimal(order.amount):.2f}",
                                                     "email": order.email}})

    async def webhook(self, request: web.Request, _: dict[str, str]) -> web.Response:
        # No signature, no amount check: whatever arrives here is believed.
        body = await json_body(request)
        if isinstance(body, web.Response):
            return body
        if body.get("transaction_status") in PAID_ON and isinstance(body.get("order_id"), str):
            await self.store.set_status(body["order_id"], self.status["paid"])
            found = await self.store.orders(body["order_id"])
            failed = await self.mail(found[0].email, f"Payment for {found[0].id} received") if found else None
            if failed is not None:
                return failed
        return send_text("OK")

    async def mail(self, to: str, subject: str) -> web.Response | None:
        """The SQLite generation's email, awaited: its failure is the request's 500 (what was written stays)."""
        if self.mailer is None or self.postgresql:
            return None
        try:
            await self.mailer.send(to, subject, "Thank you.")
        except MailFailed as exc:
            return send_json({"success": False, "error": "Internal server error", "message": str(exc)}, 500)
        return None

    async def health(self, _: web.Request, __: dict[str, str]) -> web.Response:
        return send_json({"uptime": time.monotonic() - self.started,
                          "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                          "status": "healthy", "service": "payment-api-v1",
                          "database": {"status": "connected", "type": "postgresql"}})

    async def ready(self, _: web.Request, __: dict[str, str]) -> web.Response:
        return send_json({"status": "ready"})

    async def live(self, _: web.Request, __: dict[str, str]) -> web.Response:
        return send_json({"status": "alive"})

    def app(self) -> web.Application:
        router = ExpressRouter()
        router.add("POST", "/payment/create", self.create)
        router.add("POST", "/webhooks/midtrans", self.webhook)
        if self.postgresql:
            router.add("GET", "/orders/:orderId/status", self.order_status)
            router.add("GET", "/health", self.health)
            router.add("GET", "/health/ready", self.ready)
            router.add("GET", "/health/live", self.live)
        self.admin.add_routes(router)

        async def resources(_: web.Application) -> Any:
            await self.store.open()
            self._session = aiohttp.ClientSession()
            yield
            await self._session.close()
            await self.store.close()

        app = express_app(router)
        app.cleanup_ctx.append(resources)
        return app

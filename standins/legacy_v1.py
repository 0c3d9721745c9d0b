"""`dualstack legacy-v1`: a stand-in for the legacy v1 payment API (Node.js + SQLite, port 3002).

This is NOT v1; it reproduces v1's contract so that the router, shadow comparisons and the SQLite
migration can be exercised end to end where the Node service is not available:
- one tenant, one Midtrans server key, orders in a SQLite file with v1's schema (`orders` with
  id, customer_name, email, phone, amount, payment_method, status, created_at, updated_at, plus the
  token and payment_url columns some deployments have); status spelled `pending`/`paid` (the
  original) or `PENDING_PAYMENT`/`PAID`/`FAILED`/`EXPIRED` (later variants), per --status-spelling;
- `POST /payment/create` -> `{success, paymentUrl, token}`, validation errors in v1's shape;
- `GET /orders/:orderId/status` -> `{success, order: {id, status, totalAmount, customerName, email}}`;
- `POST /webhooks/midtrans` -> `200 "OK"`, paid on settlement or capture;
- `GET /health`.
v1's admin endpoints (JWT login, order listing and editing) are not reproduced.
The database runs in WAL mode, so a migration can read it while the stand-in writes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from controlplane.config.address import parse_listen

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
  id TEXT PRIMARY KEY,
  customer_name TEXT NOT NULL,
  email TEXT NOT NULL,
  phone TEXT NOT NULL,
  amount INTEGER NOT NULL,
  payment_method TEXT NOT NULL,
  status TEXT DEFAULT 'pending',
  token TEXT,
  payment_url TEXT,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
  updated_at DATETIME DEFAULT CURRENT_TIMESTAMP
);
"""
SPELLINGS = {
    "lower": {"pending": "pending", "paid": "paid", "failed": "failed", "expired": "expired"},
    "upper": {"pending": "PENDING_PAYMENT", "paid": "PAID", "failed": "FAILED", "expired": "EXPIRED"},
}
_MIDTRANS_TO_V1 = {"settlement": "paid", "capture": "paid", "deny": "failed", "cancel": "failed",
                   "failure": "failed", "expire": "expired"}


def open_database(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA)
    return conn


class LegacyV1:
    def __init__(self, db: sqlite3.Connection, *, server_key: str, snap_url: str,
                 notification_url: str | None = None, spelling: str = "upper") -> None:
        self.db = db
        self.server_key = server_key
        self.snap_url = snap_url
        self.notification_url = notification_url
        self.status = SPELLINGS[spelling]
        self._session: aiohttp.ClientSession | None = None

    async def create(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        details = []
        if not str(body.get("orderId") or "").strip():
            details.append("Order ID is required")
        amount = body.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, (int, str)) or not str(amount).isdigit() \
                or int(amount) <= 0:
            details.append("Valid amount is required")
        if "@" not in str(body.get("email") or ""):
            details.append("Valid email is required")
        if not str(body.get("phone") or "").strip():
            details.append("Phone number is required")
        if not str(body.get("name") or "").strip():
            details.append("Name is required")
        if details:
            return web.json_response({"error": "Validation Error", "message": "Invalid input data",
                                      "details": details}, status=400)
        order_id = str(body["orderId"]).strip()
        try:
            self.db.execute("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                            "VALUES (?, ?, ?, ?, ?, 'midtrans', ?)",
                            (order_id, str(body["name"]).strip(), str(body["email"]).strip(),
                             str(body["phone"]).strip(), int(amount), self.status["pending"]))
        except sqlite3.IntegrityError:
            return web.json_response({"success": False, "error": "Order already exists"}, status=409)
        headers = {"Authorization": "Basic " + base64.b64encode(f"{self.server_key}:".encode()).decode(),
                   "Accept": "application/json"}
        if self.notification_url:
            headers["X-Override-Notification"] = self.notification_url
        snap_body = {"transaction_details": {"order_id": order_id, "gross_amount": int(amount)},
                     "customer_details": {"first_name": str(body["name"]), "email": str(body["email"]),
                                          "phone": str(body["phone"])}}
        assert self._session is not None
        try:
            async with self._session.post(self.snap_url, json=snap_body, headers=headers) as response:
                snap = await response.json(content_type=None)
                ok = response.status == 201
        except (aiohttp.ClientError, ValueError) as exc:
            ok, snap = False, {"error_messages": [type(exc).__name__]}
        if not ok:
            return web.json_response({"success": False, "error": "Payment creation failed",
                                      "message": str((snap.get("error_messages") or ["unknown"])[0])}, status=500)
        self.db.execute("UPDATE orders SET token = ?, payment_url = ?, updated_at = CURRENT_TIMESTAMP WHERE id = ?",
                        (snap["token"], snap["redirect_url"], order_id))
        return web.json_response({"success": True, "paymentUrl": snap["redirect_url"], "token": snap["token"]})

    async def order_status(self, request: web.Request) -> web.Response:
        row = self.db.execute("SELECT id, status, amount, customer_name, email FROM orders WHERE id = ?",
                              (request.match_info["orderId"],)).fetchone()
        if row is None:
            return web.json_response({"success": False, "error": "Order not found"}, status=404)
        return web.json_response({"success": True, "order": {
            "id": row[0], "status": row[1], "totalAmount": row[2], "customerName": row[3], "email": row[4]}})

    async def webhook(self, request: web.Request) -> web.Response:
        try:
            payload: dict[str, Any] = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="Bad Request")
        fields = [str(payload.get(k, "")) for k in ("order_id", "status_code", "gross_amount")]
        expected = hashlib.sha512(("".join(fields) + self.server_key).encode()).hexdigest()
        if not hmac.compare_digest(expected, str(payload.get("signature_key", ""))):
            return web.Response(status=403, text="Invalid signature")
        new = _MIDTRANS_TO_V1.get(str(payload.get("transaction_status")))
        if new is not None:
            current = self.db.execute("SELECT status FROM orders WHERE id = ?", (fields[0],)).fetchone()
            if current is not None and current[0] != self.status["paid"]:
                self.db.execute("UPDATE orders SET status = ?, updated_at = CURRENT_TIMESTAMP WHERE id = ?",
                                (self.status[new], fields[0]))
        return web.Response(text="OK")

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": "payment-api-v1 (stand-in)"})

    def app(self) -> web.Application:
        async def session(_: web.Application) -> Any:
            self._session = aiohttp.ClientSession()
            yield
            await self._session.close()
            self.db.close()

        app = web.Application()
        app.cleanup_ctx.append(session)
        app.router.add_post("/payment/create", self.create)
        app.router.add_get("/orders/{orderId}/status", self.order_status)
        app.router.add_post("/webhooks/midtrans", self.webhook)
        app.router.add_get("/health", self.health)
        return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dualstack legacy-v1", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sqlite", required=True, help="the orders.db file (created if missing)")
    parser.add_argument("--listen", default="127.0.0.1:3002")
    parser.add_argument("--midtrans-server-key-env", default="MIDTRANS_SERVER_KEY",
                        help="environment variable holding the server key")
    parser.add_argument("--snap-url", default="https://app.sandbox.midtrans.com/snap/v1/transactions")
    parser.add_argument("--notification-url", help="sent as X-Override-Notification")
    parser.add_argument("--status-spelling", choices=["lower", "upper"], default="upper")
    ns = parser.parse_args(argv)
    key = os.environ.get(ns.midtrans_server_key_env)
    if not key:
        parser.error(f"set the Midtrans server key in ${ns.midtrans_server_key_env}")
    address = parse_listen(ns.listen)
    stand_in = LegacyV1(open_database(ns.sqlite), server_key=key, snap_url=ns.snap_url,
                        notification_url=ns.notification_url, spelling=ns.status_spelling)
    web.run_app(stand_in.app(), host=address.host, port=address.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`dualstack fake-midtrans`: a local stand-in for Midtrans, which cannot be reached from here.

It honours the contract v2 depends on (see the project's Midtrans notes):
- `POST /{sandbox|production}/snap/v1/transactions`: HTTP Basic with a known server key of that
  environment (401 otherwise), 400 for a malformed body or an order id already used with that key,
  201 `{token, redirect_url}`. The `X-Override-Notification` header and the `callbacks` (where
  Snap sends the buyer) are remembered per transaction.
- `GET /{env}/v2/{order_id}/status` (Get Status): the transaction as Midtrans reports it, with the
  same fields as a notification (signed), or JSON `status_code: "404"` for an order it does not know.
- `POST /_fake/notify`: deliver correctly signed notifications for a transaction to its notification
  URL: one status or a `sequence` (any order), `repeat` copies, a wrong `gross_amount`, or `forge`
  a bad signature. The transaction takes each status as it is sent (Get Status then agrees).
  Answers with what each delivery got back.
- `POST /_fake/status`: set a transaction's status without notifying (settle, deny, expire, refund...).
- `POST /_fake/fail`: make the next N calls fail (500 or a hang): Snap by default, `"api": "status"`
  for Get Status.
- `GET /_fake/transactions`, `GET /_fake/deliveries`: what happened, for tests and demos.

Deliveries only go to loopback addresses. It keeps everything in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import ipaddress
import re
import sys
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from controlplane.config.address import parse_listen

_ORDER_ID_RE = re.compile(r"[A-Za-z0-9._~-]{1,50}")
_PREFIX = {"sandbox": "SB-Mid-server-", "production": "Mid-server-"}
STATUS_CODES = {"settlement": "200", "capture": "200", "refund": "200", "partial_refund": "200",
                "chargeback": "200", "pending": "201", "authorize": "201", "deny": "202", "cancel": "202",
                "expire": "202", "failure": "202"}
APIS = ("snap", "status")


def status_code_for(status: str, fraud_status: str | None = None) -> str:
    """The code Midtrans sends with a status: a challenged capture is still pending (201)."""
    if status == "capture" and fraud_status == "challenge":
        return "201"
    if status == "capture" and fraud_status == "deny":
        return "202"
    return STATUS_CODES.get(status, "200")


@dataclass
class Transaction:
    order_id: str
    gross_amount: int
    server_key: str = field(repr=False)
    environment: str
    token: str
    transaction_id: str
    notification_urls: list[str]
    status: str = "pending"
    fraud_status: str | None = None
    payment_type: str = "bank_transfer"
    callbacks: dict[str, Any] = field(default_factory=dict)  # as the Snap request sent them


@dataclass
class Delivery:
    url: str
    order_id: str
    transaction_status: str
    status: int
    body: str


def signature(order_id: str, status_code: str, gross_amount: str, server_key: str) -> str:
    return hashlib.sha512(f"{order_id}{status_code}{gross_amount}{server_key}".encode()).hexdigest()


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FakeMidtrans:
    def __init__(self, server_keys: list[str], *, public_url: str = "http://127.0.0.1:3900",
                 default_notification_url: str | None = None) -> None:
        self.server_keys = set(server_keys)
        self.public_url = public_url.rstrip("/")
        self.default_notification_url = default_notification_url
        self.transactions: dict[tuple[str, str], Transaction] = {}
        self.deliveries: list[Delivery] = []
        self.snap_calls = 0
        self.status_calls = 0
        self._failures: list[str] = []  # Snap's
        self._status_failures: list[str] = []
        self._released = asyncio.Event()  # ends every hang when the server shuts down
        self._session: aiohttp.ClientSession | None = None

    def add_key(self, key: str) -> None:
        self.server_keys.add(key)

    def _key_from(self, request: web.Request, environment: str | None) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, _ = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if user not in self.server_keys:
            return None
        if environment is not None and not user.startswith(_PREFIX[environment]):
            return None  # a sandbox key on the production endpoint, or the reverse
        return user

    def fail_next(self, api: str = "snap", mode: str = "500", count: int = 1) -> None:
        """The next `count` calls of `api` (snap, status) answer 500, or hang (mode "hang")."""
        if api not in APIS or mode not in ("500", "hang"):
            raise ValueError(f"unknown api {api!r} or mode {mode!r}")
        (self._failures if api == "snap" else self._status_failures).extend([mode] * count)

    async def _failed(self, failures: list[str]) -> web.Response | None:
        if not failures:
            return None
        if failures.pop(0) == "hang":
            await self._released.wait()
        return web.json_response({"status_code": "500", "error_messages": [
            "Sorry, we encountered internal server error"]}, status=500)

    async def snap_create(self, request: web.Request) -> web.Response:
        self.snap_calls += 1
        environment = request.match_info["env"]
        failed = await self._failed(self._failures)
        if failed is not None:
            return failed
        key = self._key_from(request, environment)
        if key is None:
            return web.json_response({"status_code": "401", "error_messages": [
                "Access denied due to unauthorized transaction, please check client or server key"]}, status=401)
        try:
            body = await request.json()
            details = body["transaction_details"]
            order_id, amount = details["order_id"], details["gross_amount"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error_messages": ["transaction_details is required"]}, status=400)
        problems = []
        if not isinstance(order_id, str) or not _ORDER_ID_RE.fullmatch(order_id):
            problems.append("transaction_details.order_id is invalid")
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
            problems.append("transaction_details.gross_amount must be an integer of at least 1")
        if problems:
            return web.json_response({"error_messages": problems}, status=400)
        if (key, order_id) in self.transactions:
            return web.json_response({"error_messages": [
                "transaction_details.order_id has already been taken"]}, status=400)
        override = request.headers.get("X-Override-Notification", "")
        urls = [u.strip() for u in override.split(",") if u.strip()][:3]
        if not urls and self.default_notification_url:
            urls = [self.default_notification_url]
        token = str(uuid.uuid4())
        callbacks = body.get("callbacks") if isinstance(body, dict) else None
        self.transactions[(key, order_id)] = Transaction(order_id, amount, key, environment, token,
                                                         str(uuid.uuid4()), urls,
                                                         callbacks=dict(callbacks or {}))
        return web.json_response({"token": token,
                                  "redirect_url": f"{self.public_url}/snap/v4/redirection/{token}"}, status=201)

    def _find(self, order_id: str, key: str | None = None) -> Transaction | None:
        for (k, oid), transaction in self.transactions.items():
            if oid == order_id and (key is None or k == key):
                return transaction
        return None

    def set_status(self, order_id: str, status: str, *, fraud_status: str | None = None,
                   server_key: str | None = None) -> Transaction:
        """What Midtrans now holds for the order (what Get Status reports); nothing is delivered."""
        transaction = self._find(order_id, server_key)
        if transaction is None:
            raise KeyError(order_id)
        transaction.status, transaction.fraud_status = status, fraud_status
        return transaction

    async def status(self, request: web.Request) -> web.Response:
        self.status_calls += 1
        failed = await self._failed(self._status_failures)
        if failed is not None:
            return failed
        key = self._key_from(request, request.match_info["env"])
        if key is None:
            return web.json_response({"status_code": "401", "status_message": "Unauthorized"}, status=401)
        transaction = self._find(request.match_info["order_id"], key)
        if transaction is None:
            return web.json_response({"status_code": "404", "status_message": "Transaction doesn't exist."})
        report = self.notification(transaction, transaction.status, fraud_status=transaction.fraud_status)
        return web.json_response({**report, "status_message": "Success, transaction is found"})

    async def set_status_http(self, request: web.Request) -> web.Response:
        spec = await request.json()
        try:
            transaction = self.set_status(spec["order_id"], spec["transaction_status"],
                                          fraud_status=spec.get("fraud_status"), server_key=spec.get("server_key"))
        except KeyError:
            return web.json_response({"error": f"no transaction for order {spec.get('order_id')}"}, status=404)
        return web.json_response({"order_id": transaction.order_id, "transaction_status": transaction.status,
                                  "fraud_status": transaction.fraud_status})

    def notification(self, transaction: Transaction, status: str, *, fraud_status: str | None = None,
                     gross_amount: str | None = None, forge: bool = False) -> dict[str, Any]:
        """A signed report on the transaction: a notification, and (with the same fields) Get Status."""
        amount = gross_amount if gross_amount is not None else f"{transaction.gross_amount}.00"
        code = status_code_for(status, fraud_status)
        key = "SB-Mid-server-FORGED" if forge else transaction.server_key
        payload: dict[str, Any] = {
            "transaction_time": "2026-11-27 10:00:00", "transaction_status": status,
            "transaction_id": transaction.transaction_id, "status_message": "midtrans payment notification",
            "status_code": code, "signature_key": signature(transaction.order_id, code, amount, key),
            "payment_type": transaction.payment_type, "order_id": transaction.order_id,
            "merchant_id": "G000000000", "gross_amount": amount, "currency": "IDR",
        }
        if fraud_status is not None:
            payload["fraud_status"] = fraud_status
        if status == "settlement":
            payload["settlement_time"] = "2026-11-27 10:00:05"
        return payload

    async def notify(self, request: web.Request) -> web.Response:
        spec = await request.json()
        transaction = self._find(spec["order_id"], spec.get("server_key"))
        if transaction is None:
            return web.json_response({"error": f"no transaction for order {spec['order_id']}"}, status=404)
        urls = [spec["url"]] if spec.get("url") else transaction.notification_urls
        if not urls:
            return web.json_response({"error": "the transaction has no notification URL"}, status=400)
        if not all(_is_loopback(u) for u in urls):
            return web.json_response({"error": "this fake only delivers to loopback addresses"}, status=400)
        sequence = spec.get("sequence") or [spec.get("transaction_status", "settlement")]
        results = []
        assert self._session is not None
        for status in sequence:
            payload = self.notification(transaction, status, fraud_status=spec.get("fraud_status"),
                                        gross_amount=spec.get("gross_amount"), forge=bool(spec.get("forge")))
            if not spec.get("forge"):
                transaction.status, transaction.fraud_status = status, spec.get("fraud_status")
            for _ in range(int(spec.get("repeat", 1))):
                for url in urls:
                    results.append(await self._deliver(url, transaction.order_id, status, payload))
        return web.json_response({"deliveries": [asdict(d) for d in results]})

    async def _deliver(self, url: str, order_id: str, status: str, payload: dict[str, Any]) -> Delivery:
        assert self._session is not None
        try:
            async with self._session.post(url, json=payload, headers={"User-Agent": "Veritrans"},
                                          timeout=aiohttp.ClientTimeout(total=15)) as response:
                delivery = Delivery(url, order_id, status, response.status, (await response.text())[:500])
        except (TimeoutError, aiohttp.ClientError) as exc:
            delivery = Delivery(url, order_id, status, 0, type(exc).__name__)
        self.deliveries.append(delivery)
        return delivery

    async def fail(self, request: web.Request) -> web.Response:
        spec = await request.json()
        api = spec.get("api", "snap")
        try:
            self.fail_next(api, str(spec.get("mode", "500")), int(spec.get("count", 1)))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"pending_failures": len(self._failures if api == "snap" else
                                                          self._status_failures)})

    async def list_transactions(self, _: web.Request) -> web.Response:
        return web.json_response([{k: v for k, v in asdict(t).items() if k != "server_key"}
                                  for t in self.transactions.values()])

    async def list_deliveries(self, _: web.Request) -> web.Response:
        return web.json_response([asdict(d) for d in self.deliveries])

    def app(self) -> web.Application:
        async def session(_: web.Application) -> Any:
            self._session = aiohttp.ClientSession()
            yield
            await self._session.close()

        async def release(_: web.Application) -> None:
            self._released.set()

        app = web.Application()
        app.cleanup_ctx.append(session)
        app.on_shutdown.append(release)
        app.router.add_post("/{env:sandbox|production}/snap/v1/transactions", self.snap_create)
        app.router.add_get("/{env:sandbox|production}/v2/{order_id}/status", self.status)
        app.router.add_post("/_fake/notify", self.notify)
        app.router.add_post("/_fake/status", self.set_status_http)
        app.router.add_post("/_fake/fail", self.fail)
        app.router.add_get("/_fake/transactions", self.list_transactions)
        app.router.add_get("/_fake/deliveries", self.list_deliveries)
        return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dualstack fake-midtrans", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default="127.0.0.1:3900")
    parser.add_argument("--server-key", action="append", default=[], help="a server key to accept (repeatable)")
    parser.add_argument("--server-keys-file", help="more keys to accept, one `slug=key` a line (the router's "
                        "DUALSTACK_MIDTRANS_KEYS_FILE): keys stay off the command line, which `ps` shows")
    parser.add_argument("--default-notification-url", help="when a transaction names none")
    ns = parser.parse_args(argv)
    address = parse_listen(ns.listen)
    keys = list(ns.server_key)
    if ns.server_keys_file:  # read as the router reads it: the same file, the same rules (0600, bounded)
        from proxy.router.notification_keys import parse_keys_file

        keys += [key.reveal() for key in parse_keys_file(Path(ns.server_keys_file)).values()]
    fake = FakeMidtrans(keys, public_url=address.url,
                        default_notification_url=ns.default_notification_url)
    web.run_app(fake.app(), host=address.host, port=address.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())

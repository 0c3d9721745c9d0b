"""Midtrans over aiohttp: Snap behind `POST /payment/create`, Get Status behind the webhook.

Two small interfaces: PaymentGateway (so that the shadow dry-run can swap in a gateway that calls
nothing) and StatusSource (Midtrans' own word on a transaction, which the webhook asks before a
money-moving change). The server key is sent as HTTP Basic user with an empty password and never
logged.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import quote

import aiohttp

from controlplane.midtrans_answer import StatusUnavailable, TransactionReport, read_status_answer
from proxy.serving.signature import signature_is_valid

log = logging.getLogger(__name__)

# The funnel's paymentMethod -> Snap's enabled_payments; unknown methods show every method.
ENABLED_PAYMENTS: Final[dict[str, str]] = {
    "bca": "bca_va", "bni": "bni_va", "bri": "bri_va", "mandiri": "echannel", "bsi": "bsi_va",
    "gopay": "gopay", "shopeepay": "shopeepay", "dana": "dana", "ovo": "ovo", "qris": "other_qris",
}
SNAP_URLS: Final = {
    "sandbox": "https://app.sandbox.midtrans.com/snap/v1/transactions",
    "production": "https://app.midtrans.com/snap/v1/transactions",
}
# The Core API base; Get Status is `GET {base}/v2/{order_id}/status`.
CORE_URLS: Final = {
    "sandbox": "https://api.sandbox.midtrans.com",
    "production": "https://api.midtrans.com",
}
_RETRY_DELAYS_S: Final = (0.2, 0.6)
# Get Status is asked while Midtrans waits (15 s) for the webhook's answer: one bounded attempt, and
# Midtrans' own retry of the notification is the retry.
STATUS_TIMEOUT_S: Final = 5.0


def basic_auth(server_key: str) -> str:
    """Midtrans' scheme: the server key as the user, an empty password."""
    return "Basic " + base64.b64encode(f"{server_key}:".encode()).decode()


@dataclass(frozen=True, slots=True)
class SnapRequest:
    order_id: str
    amount: int
    customer_name: str
    email: str
    phone: str
    payment_method: str | None
    notification_url: str
    finish_url: str | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "transaction_details": {"order_id": self.order_id, "gross_amount": self.amount},
            "customer_details": {"first_name": self.customer_name, "email": self.email, "phone": self.phone},
        }
        enabled = ENABLED_PAYMENTS.get(self.payment_method or "")
        if enabled is not None:
            body["enabled_payments"] = [enabled]
        if self.finish_url:
            body["callbacks"] = {"finish": self.finish_url, "error": self.finish_url}
        return body


@dataclass(frozen=True, slots=True)
class SnapResult:
    token: str
    redirect_url: str


class GatewayError(Exception):
    """Midtrans did not create the transaction; `kind` decides the client's answer."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # credentials | order_id_taken | rejected | unavailable
        self.message = message


class PaymentGateway(Protocol):
    async def create(self, request: SnapRequest, *, server_key: str, environment: str) -> SnapResult: ...


class StatusSource(Protocol):
    async def transaction_status(self, order_id: str, *, server_key: str,
                                 environment: str) -> TransactionReport | None:
        """Midtrans' current report on the order, None when Midtrans does not know it.

        Raises StatusUnavailable when no answer can be had within the bound."""
        ...


class MidtransGateway:
    """Snap and Get Status over HTTP. `snap_urls` and `core_urls` override the endpoints per
    environment (the local fake, in tests and the demo)."""

    def __init__(self, snap_urls: dict[str, str] | None = None, timeout_s: float = 10.0, *,
                 core_urls: dict[str, str] | None = None, status_timeout_s: float = STATUS_TIMEOUT_S) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._urls = {**SNAP_URLS, **(snap_urls or {})}
        self._core_urls = {**CORE_URLS, **(core_urls or {})}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._status_timeout = aiohttp.ClientTimeout(total=status_timeout_s)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def create(self, request: SnapRequest, *, server_key: str, environment: str) -> SnapResult:
        if self._session is None:
            raise RuntimeError("MidtransGateway.start() was not called")
        url = self._urls[environment]
        headers = {"Accept": "application/json", "X-Override-Notification": request.notification_url,
                   "Authorization": basic_auth(server_key)}
        attempt = 0
        while True:
            try:
                async with self._session.post(url, json=request.body(), headers=headers,
                                              timeout=self._timeout) as response:
                    payload = await _json(response)
                    status = response.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                status, payload = 0, {"error_messages": [type(exc).__name__]}
            if status == 201 and isinstance(payload.get("token"), str) and \
                    isinstance(payload.get("redirect_url"), str):
                return SnapResult(payload["token"], payload["redirect_url"])
            messages = payload.get("error_messages") or []
            first = str(messages[0]) if isinstance(messages, list) and messages else f"HTTP {status}"
            if status == 401:
                raise GatewayError("credentials", "Midtrans rejected this tenant's server key "
                                                  "(check the key and its environment)")
            if status == 400 and "already been taken" in first:
                raise GatewayError("order_id_taken", "Midtrans already has a transaction with this order id")
            if 400 <= status < 500 or status == 201:
                raise GatewayError("rejected", f"Midtrans refused the transaction: {first}")
            if attempt >= len(_RETRY_DELAYS_S):
                raise GatewayError("unavailable", f"Midtrans is unavailable ({first}); try again shortly")
            log.warning("Snap create for order %s failed (%s); retrying", request.order_id, first)
            await asyncio.sleep(_RETRY_DELAYS_S[attempt])
            attempt += 1


    async def transaction_status(self, order_id: str, *, server_key: str,
                                 environment: str) -> TransactionReport | None:
        if self._session is None:
            raise RuntimeError("MidtransGateway.start() was not called")
        url = f"{self._core_urls[environment].rstrip('/')}/v2/{quote(order_id, safe='')}/status"
        headers = {"Accept": "application/json", "Content-Type": "application/json",
                   "Authorization": basic_auth(server_key)}
        try:
            async with self._session.get(url, headers=headers, timeout=self._status_timeout) as response:
                payload = await _json(response)
                status = response.status
        except TimeoutError as exc:
            raise StatusUnavailable("Get Status timed out") from exc
        except aiohttp.ClientError as exc:
            raise StatusUnavailable(f"Get Status failed ({type(exc).__name__})") from exc
        report = read_status_answer(order_id, status, payload)
        if report is not None and "signature_key" in payload and not signature_is_valid(payload, server_key):
            raise StatusUnavailable("Get Status answered with a signature that does not verify")
        return report


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        payload = await response.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        return {}
    return payload if isinstance(payload, dict) else {}

"""Midtrans notifications are verified by the router before any backend sees one.

v1 applies any notification, signed or not, and a copy the router delivers to v1 can reach v2 through
the next sync: so a forged one must stop here, for every tenant, v1's included. The tenant's server
key comes from the router's own key source (proxy/router/notification_keys.py: v2's tenant store
through a role that reads one key, cached, or a keys file), so verifying never waits for v2.

Every request a backend would take for a notification is one (proxy/router/notification_path.py:
`/Webhooks/Midtrans/`, `//webhooks/midtrans` and `%`-escaped forms too). What is refused is answered
here and reaches nobody: a bad signature 403 (Midtrans does not resend a forgery); a status that
disagrees with its signed status code 403 (a genuine notification re-sent with its status changed,
proxy/serving/status_codes.py: v1 would apply it); a body that is not a bounded JSON object 400; no
key for the tenant, the key source unavailable with nothing cached, or no key source at all 503
(Midtrans retries, and ops are told: a router without keys fails closed, it never forwards
unverified). Each refusal is counted per tenant and reason; the log says so once a minute per
tenant, not once per forgery.

A verified notification v1 would misapply (proxy/serving/status_codes.py `v1_would_misapply`: a
`capture` challenged or denied, which v1 marks paid) is delivered, but never to v1: the verdict says
so, and proxy/router/request.py keeps it from v1 as the serving backend and as a copy. Each one kept
is counted (dualstack_notifications_withheld_total) and logged with its order id, once a minute per
tenant with how many more were kept since: ops reconcile those orders on v1 by hand.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from proxy.router.handover import MAX_NOTIFICATION_BYTES
from proxy.router.metrics import ProxyMetrics
from proxy.router.notification_keys import DATABASE_URL_ENV, KEYS_FILE_ENV, KeyStore, KeysUnavailable
from proxy.router.notification_path import is_notification
from proxy.serving.signature import signature_is_valid
from proxy.serving.status_codes import status_code_disagrees, v1_would_misapply

log = logging.getLogger(__name__)

LOG_EVERY_S: Final = 60.0
WITHHELD_REASON: Final = "v1_would_misapply"


@dataclass(frozen=True, slots=True)
class Verified:
    """A genuine notification: deliver it, to v1 too unless `keep_from_v1`."""

    order_id: str  # for the log only (bounded), never a metric label
    keep_from_v1: bool


class NotificationGate:
    """`keys` None: the router has no key source, and refuses every notification (503) until it has one."""

    def __init__(self, keys: KeyStore | None, metrics: ProxyMetrics) -> None:
        self._keys = keys
        self._metrics = metrics
        self._logged: dict[tuple[str, str], float] = {}
        self._kept_since: dict[str, int] = {}  # per tenant: notifications kept from v1 since the last log line

    @staticmethod
    def applies(method: str, path: str) -> bool:
        return is_notification(method, path)

    async def verify(self, request: web.Request, tenant: str) -> web.Response | Verified:
        """What to deliver when the notification is genuine; otherwise the answer that ends it here."""
        if self._keys is None:
            return self._refuse(tenant, "no_key_source", 503, "this router has no notification key source "
                                f"({KEYS_FILE_ENV} or {DATABASE_URL_ENV}): nothing is delivered unverified")
        length = request.content_length
        if length is None or length > MAX_NOTIFICATION_BYTES:
            return self._refuse(tenant, "too_large", 413, "a notification must be a JSON body of at most "
                                f"{MAX_NOTIFICATION_BYTES} bytes with a Content-Length")
        body = await request.read()  # bounded above; aiohttp keeps it for the forwarding that follows
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            payload = None
        if not isinstance(payload, dict):
            return self._refuse(tenant, "malformed", 400, "the notification is not a JSON object")
        try:
            key = await self._keys.key_for(tenant)
        except KeysUnavailable:
            return self._refuse(tenant, "keys_unavailable", 503, "the notification cannot be verified right now")
        if key is None:
            return self._refuse(tenant, "no_key", 503, "no notification key is known for this tenant")
        if not signature_is_valid(payload, key.reveal()):
            return self._refuse(tenant, "invalid_signature", 403, "the notification's signature is not valid")
        if status_code_disagrees(payload):
            return self._refuse(tenant, "inconsistent_status", 403,
                                "the transaction status does not match the signed status code")
        order_id = payload.get("order_id")
        return Verified(order_id[:60] if isinstance(order_id, str) else "?", v1_would_misapply(payload))

    def withheld(self, tenant: str, order_id: str, delivery: str) -> None:
        """Count a notification kept from v1 (`delivery`: the primary or the copy it would have had) and
        log it, with its order id, once a minute per tenant (and how many more were kept since)."""
        self._metrics.notifications_withheld.labels(tenant, WITHHELD_REASON).inc()
        key = (tenant, WITHHELD_REASON)
        self._kept_since[tenant] = self._kept_since.get(tenant, 0) + 1
        now = time.monotonic()
        if now - self._logged.get(key, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._logged[key] = now
            log.warning("tenant %s order %s: a capture v1 would mark paid (fraud status not accept) was kept "
                        "from v1 (its %s); reconcile the order on v1 by hand (%d kept, this one included, since "
                        "the last such line; logged once a minute; dualstack_notifications_withheld_total counts "
                        "each)", tenant, order_id, delivery, self._kept_since.pop(tenant))

    def _refuse(self, tenant: str, reason: str, status: int, message: str) -> web.Response:
        self._metrics.notifications_refused.labels(tenant, reason).inc()
        now = time.monotonic()
        if now - self._logged.get((tenant, reason), -LOG_EVERY_S) >= LOG_EVERY_S:
            self._logged[(tenant, reason)] = now
            log.warning("tenant %s: notification refused at the router (%s); it reached no backend "
                        "(logged once a minute; dualstack_notifications_refused_total counts each)", tenant, reason)
        return web.json_response({"success": False, "error": reason, "message": message}, status=status)

"""Midtrans' own word on an order (Get Status), asked by the control plane: blocking urllib with a
short timeout, for commands (syncs from v1, reconcile reports), never for a request path.

`GET {core}/v2/{order_id}/status`, HTTP Basic with the tenant's server key as user and an empty
password. The key is used for the call and never kept, logged or put in an error. Core API bases
default to Midtrans' own; `DUALSTACK_MIDTRANS_CORE_URL_SANDBOX` / `..._PRODUCTION` (or the
commands' `--core-url-*` options) point them elsewhere (a local fake Midtrans). What the answer
means is read by controlplane/midtrans_answer.py, as v2 reads it.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from controlplane.midtrans_answer import StatusUnavailable, TransactionReport, read_status_answer

CORE_URLS: Final = {"sandbox": "https://api.sandbox.midtrans.com", "production": "https://api.midtrans.com"}
CORE_URL_ENV: Final = {"sandbox": "DUALSTACK_MIDTRANS_CORE_URL_SANDBOX",
                       "production": "DUALSTACK_MIDTRANS_CORE_URL_PRODUCTION"}
TIMEOUT_S: Final = 3.0
_MAX_ANSWER_BYTES: Final = 64 * 1024


class MidtransStatus:
    def __init__(self, core_urls: Mapping[str, str] | None = None, *, timeout_s: float = TIMEOUT_S) -> None:
        self.core_urls = {**CORE_URLS, **(core_urls or {})}
        self.timeout_s = timeout_s

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ,
                         overrides: Mapping[str, str | None] | None = None) -> MidtransStatus:
        urls = {env: value for env, name in CORE_URL_ENV.items() if (value := environ.get(name))}
        urls.update({env: value for env, value in (overrides or {}).items() if value})
        return cls(urls)

    def transaction_status(self, order_id: str, *, server_key: str, environment: str) -> TransactionReport | None:
        """Midtrans' current report on the order; None when Midtrans does not know it."""
        base = self.core_urls.get(environment)
        if base is None:
            raise StatusUnavailable(f"no Midtrans Core API for environment '{environment}'")
        request = urllib.request.Request(
            f"{base.rstrip('/')}/v2/{quote(order_id, safe='')}/status",
            headers={"Accept": "application/json", "Content-Type": "application/json",
                     "Authorization": "Basic " + base64.b64encode(f"{server_key}:".encode()).decode()})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status, body = response.status, response.read(_MAX_ANSWER_BYTES)
        except urllib.error.HTTPError as exc:
            with exc:  # an error answer holds its connection until closed
                status, body = exc.code, exc.read(_MAX_ANSWER_BYTES)
        except TimeoutError as exc:
            raise StatusUnavailable("Get Status timed out") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise StatusUnavailable(f"Get Status failed ({type(reason).__name__})") from exc
        return read_status_answer(order_id, status, _json(body))


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return payload if isinstance(payload, dict) else {}

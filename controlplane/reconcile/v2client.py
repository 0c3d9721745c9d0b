"""v2's reconcile API (`/admin/reconcile`), for the control plane: urllib, the tenant's admin token
as Bearer, the tenant named by `?tenant=`. The token is never printed or put in an error."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

# v2 asks Get Status within 5 s while the call waits; this leaves it room.
TIMEOUT_S: Final = 15.0


class V2Problem(Exception):
    """v2 cannot be asked (unreachable, the token refused, the tenant unknown); nothing more is
    tried this run. The message says what to fix."""


@dataclass(frozen=True, slots=True)
class Candidate:
    order_id: str
    status: str  # v2's
    reason: str  # pending (past the threshold) | unconfirmed (a notification Midtrans could not confirm)


class V2Admin:
    def __init__(self, base_url: str, slug: str, token: str, *, timeout_s: float = TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.slug = slug
        self._token = token
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"V2Admin({self.base_url!r}, tenant={self.slug!r})"

    def candidates(self, *, older_than_s: float, within_s: float, limit: int) -> tuple[int, list[Candidate]]:
        """(orders pending past the threshold, the candidates, oldest first)."""
        status, body = self._call("GET", "/admin/reconcile", {"olderThan": int(older_than_s),
                                                              "within": int(within_s), "limit": limit})
        if status != 200:
            raise V2Problem(f"v2 at {self.base_url} could not list orders to reconcile: {_said(status, body)}")
        orders = body.get("orders")
        if not isinstance(orders, list):
            orders = []
        return int(body.get("pendingPastThreshold") or 0), [
            Candidate(str(o["orderId"]), str(o["status"]), str(o["reason"])) for o in orders if isinstance(o, dict)]

    def reconcile(self, order_id: str) -> tuple[int, dict[str, Any]]:
        return self._call("POST", f"/admin/reconcile/{quote(order_id, safe='')}")

    def midtrans_view(self, order_id: str) -> tuple[int, dict[str, Any]]:
        return self._call("GET", f"/admin/reconcile/{quote(order_id, safe='')}")

    def _call(self, method: str, path: str, query: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        url = f"{self.base_url}{path}?{urlencode({**(query or {}), 'tenant': self.slug})}"
        request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None,
                                         headers={"Authorization": f"Bearer {self._token}",
                                                  "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            with exc:  # an error answer holds its connection until closed
                status, raw = exc.code, exc.read()
        except TimeoutError:
            raise V2Problem(f"v2 at {self.base_url} did not answer within {self.timeout_s:g} s") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise V2Problem(f"cannot reach v2 at {self.base_url} ({type(reason).__name__}); is it running?") from None
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if status == 401:
            raise V2Problem(f"v2 refused the admin token for tenant {self.slug}: pass the token `dualstack tenant "
                            "add` or `rotate-token` printed (in the environment variable --admin-token-env names)")
        if status == 429:
            raise V2Problem(f"v2 throttles admin token attempts for tenant {self.slug}; try again later")
        if status == 404 and body.get("error") == "unknown_tenant":
            raise V2Problem(f"v2 at {self.base_url} knows no tenant '{self.slug}'")
        return status, body


def _said(status: int, body: dict[str, Any]) -> str:
    return f"HTTP {status}" + (f" ({body['message']})" if isinstance(body.get("message"), str) else "")

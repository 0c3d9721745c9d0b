"""Asking v1, v2 and the routers over HTTP: a health answer, which backend a router serves."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from controlplane.config.model import HealthCheck, UpstreamSpec
from controlplane.http_failure import describe


def get_json(url: str, timeout_s: float = 3.0) -> tuple[int, Any]:
    """(status, parsed body; None when it is not JSON). Raises URLError/OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"null")
        except ValueError:
            return error.code, None
    except ValueError:
        return 200, None


def tcp_connect(url: str, timeout_s: float = 3.0) -> None:
    """Open and close a TCP connection to the URL's host and port; raises OSError when nothing accepts."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
        pass


ROUTES_TIMEOUT_S = 3.0


def router_serves(admin_url: str, slug: str) -> tuple[str | None, str]:
    """(the backend a router's /routes says it serves the tenant from, or None and why not:
    connection refused, timed out, HTTP 503, the tenant not listed)."""
    try:
        status, body = get_json(f"{admin_url.rstrip('/')}/routes", ROUTES_TIMEOUT_S)
    except (urllib.error.URLError, OSError) as exc:
        return None, describe(exc, ROUTES_TIMEOUT_S)
    if status != 200 or not isinstance(body, dict):
        return None, f"/routes answered HTTP {status}" + ("" if isinstance(body, dict) else ", not JSON")
    tenant = body.get("tenants", {}).get(slug)
    if not isinstance(tenant, dict):
        return None, f"/routes does not list {slug} (see its last_reload.issues)"
    return tenant.get("backend"), ""


def backend_health(upstream: UpstreamSpec, slug: str) -> tuple[bool, str]:
    """(whether the backend answers its health check as the routing file declares it, what it
    answered). v2's own /health names the tenant it resolved: that it knows this one is part of
    being healthy for it."""
    base, spec, name = upstream.url, upstream.health, upstream.name
    if spec.tcp:
        try:
            tcp_connect(base)
        except OSError as exc:
            return False, f"{name} at {base} accepts no TCP connection ({exc})"
        return True, f"{name} accepts TCP connections at {base} (health: tcp; nothing more asked)"
    names_tenant = name == "v2" and spec.path == HealthCheck().path
    url = f"{base}{spec.path}" + (f"?tenant={urllib.parse.quote(slug)}" if names_tenant else "")
    try:
        status, body = get_json(url)
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{name} at {base} does not answer ({getattr(exc, 'reason', exc)})"
    if status != spec.expect_status:
        return False, f"{name} answers {status} at {url} (expected {spec.expect_status}): {json.dumps(body)[:200]}"
    if names_tenant and (not isinstance(body, dict) or body.get("tenant") != slug):
        return False, f"{name} is up but does not know tenant '{slug}' ({json.dumps(body)[:200]})"
    return True, f"{name} healthy at {base} ({spec.describe()})"

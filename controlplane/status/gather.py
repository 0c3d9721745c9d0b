"""Reading what `dualstack status` shows: the routing file, the state database (one query per table,
whatever the number of tenants), every router's /routes and Prometheus' firing alerts, all at once in
threads, each bounded in time and size. What cannot be read becomes a Source that says why; nothing
here raises for an unreachable or misbehaving source."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg.conninfo import conninfo_to_dict

from controlplane.config import ConfigError, load_config
from controlplane.config.model import CutoverPolicy, RoutingConfig
from controlplane.errors import first_line
from controlplane.state import shadow_samples
from controlplane.state.locks import SELECT_LOCKS, locks_from_rows
from controlplane.state.reverse_syncs import SELECT_ALL as SELECT_REVERSE_SYNCS
from controlplane.state.reverse_syncs import records_from_rows
from controlplane.state.rollouts import fleet_rollouts
from controlplane.state.schema import query
from controlplane.status.readings import (
    Alert,
    Gathered,
    RouterRoutes,
    RouterTenant,
    Source,
    SourceKind,
    StateReadings,
)

TIMEOUT_S: Final = 5.0
MAX_ANSWER_BYTES: Final = 64 * 1024 * 1024  # /routes of 10,000 tenants is a few MB
MAX_ALERTS: Final = 10_000
_CHUNK: Final = 64 * 1024


class Unreadable(Exception):
    """A source could not be read; the message says why, in one line, without secrets."""


def gather(config_path: str | Path, state_url: str | None, schema: str, router_urls: Sequence[str],
           prometheus_url: str | None, now: datetime, timeout_s: float = TIMEOUT_S) -> Gathered:
    config, file_source = _routing_file(config_path)
    window_s = (config.cutover if config else CutoverPolicy()).shadow_window_s
    with ThreadPoolExecutor(max_workers=min(16, 2 + len(router_urls)), thread_name_prefix="status") as pool:
        state_job = pool.submit(_state, state_url, schema, now, window_s, timeout_s)
        router_jobs = [pool.submit(_router, url, config, timeout_s) for url in router_urls]
        alerts_job = pool.submit(_alerts, prometheus_url, timeout_s)
        state, state_source = state_job.result()
        routers = [job.result() for job in router_jobs]
        alerts, alerts_source = alerts_job.result()
    return Gathered(now, config, state, tuple(r for r, _ in routers if r is not None), tuple(alerts),
                    (file_source, state_source, *(source for _, source in routers), alerts_source))


def _routing_file(path: str | Path) -> tuple[RoutingConfig | None, Source]:
    try:
        config = load_config(path)
    except ConfigError as exc:
        first = exc.issues[0] if exc.issues else "unreadable"
        more = f" (and {len(exc.issues) - 1} more issue(s): `dualstack validate {path}`)" if len(exc.issues) > 1 else ""
        return None, Source(SourceKind.ROUTING_FILE, str(path), False, f"{first}{more}")
    return config, Source(SourceKind.ROUTING_FILE, str(path), True,
                          f"{len(config.tenants)} tenant(s), digest {config.digest[:12]}")


def _state(url: str | None, schema: str, now: datetime, window_s: float,
           timeout_s: float) -> tuple[StateReadings | None, Source]:
    if not url:
        return None, Source(SourceKind.STATE_DATABASE, "-", False, "not given (--state-database-url or "
                            "$DUALSTACK_STATE_DATABASE_URL): locks, rollouts and shadow results are unknown")
    try:
        state = read_state(url, schema, now, window_s, timeout_s)
    except Unreadable as exc:
        return None, Source(SourceKind.STATE_DATABASE, database_name(url), False, str(exc))
    return state, Source(SourceKind.STATE_DATABASE, database_name(url), True,
                         f"{len(state.locks)} lock(s), {len(state.rollouts)} rollout(s)")


def _router(url: str, config: RoutingConfig | None, timeout_s: float) -> tuple[RouterRoutes | None, Source]:
    try:
        routes = read_routes(url, timeout_s)
    except Unreadable as exc:
        return None, Source(SourceKind.ROUTER, public_url(url), False, str(exc))
    other = config is not None and routes.digest != config.digest
    return routes, Source(SourceKind.ROUTER, public_url(url), True,
                          f"generation {routes.generation}, {len(routes.tenants)} tenant(s)"
                          + ("; runs another version of the routing file" if other else ""))


def _alerts(url: str | None, timeout_s: float) -> tuple[list[Alert], Source]:
    if not url:
        return [], Source(SourceKind.PROMETHEUS, "-", None, "not asked (--prometheus-url not given)")
    try:
        alerts = read_alerts(url, timeout_s)
    except Unreadable as exc:
        return [], Source(SourceKind.PROMETHEUS, public_url(url), False, str(exc))
    return alerts, Source(SourceKind.PROMETHEUS, public_url(url), True, f"{len(alerts)} firing alert(s)")


# -- the state database ---------------------------------------------------------------------------

def read_state(url: str, schema: str, now: datetime, window_s: float, timeout_s: float) -> StateReadings:
    try:
        with psycopg.connect(url, connect_timeout=max(1, round(timeout_s)),
                             options=f"-c statement_timeout={round(timeout_s * 1000)}") as conn:
            conn.read_only = True
            locks = locks_from_rows(conn.execute(query(SELECT_LOCKS, schema)).fetchall())
            rollouts = fleet_rollouts(conn, schema)
            shadow = shadow_samples.tenant_rates(conn, schema, now - timedelta(seconds=window_s), now)
            reverse = records_from_rows(conn.execute(query(SELECT_REVERSE_SYNCS, schema)).fetchall())
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as exc:
        raise Unreadable(f"{first_line(exc)}: schema {schema} is missing or incomplete in this database: run "
                         "`dualstack db migrate --target state` against it") from None
    except psycopg.errors.QueryCanceled:
        raise Unreadable(f"no answer within {timeout_s:g} s") from None
    except psycopg.Error as exc:
        raise Unreadable(first_line(exc)) from None
    return StateReadings(locks, rollouts, shadow, reverse)


def database_name(url: str) -> str:
    """`host:port/dbname`: where a database is, without its user or password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the state database (its URL does not parse)"
    host = parts.get("host") or "localhost"
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or '?'}"


# -- routers and Prometheus over HTTP ---------------------------------------------------------------

def public_url(url: str) -> str:
    """The URL without user info (a password in it never reaches a report)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def fetch_json(url: str, timeout_s: float, max_bytes: int = MAX_ANSWER_BYTES) -> Any:
    """The JSON body of a 200 answer, read within `timeout_s` in all and at most `max_bytes`. Unreadable
    names the path asked (the Source names the server)."""
    where = urllib.parse.urlsplit(url).path or "/"
    deadline = time.monotonic() + timeout_s
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            chunks, size = [], 0
            while chunk := response.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise Unreadable(f"{where}: answer larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise Unreadable(f"{where}: no complete answer within {timeout_s:g} s")
                chunks.append(chunk)
    except urllib.error.HTTPError as exc:
        raise Unreadable(f"{where}: answered HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise Unreadable(f"{where}: {_network_problem(exc.reason, timeout_s)}") from None
    except TimeoutError:
        raise Unreadable(f"{where}: no answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise Unreadable(f"{where}: {_network_problem(exc, timeout_s)}") from None
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        raise Unreadable(f"{where}: the answer is not JSON") from None


def _network_problem(reason: object, timeout_s: float) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(reason, socket.gaierror):
        return f"host not found ({reason.strerror})"
    return str(getattr(reason, "strerror", None) or reason)


def read_routes(admin_url: str, timeout_s: float) -> RouterRoutes:
    url = admin_url.rstrip("/") + "/routes"
    body = fetch_json(url, timeout_s)
    tenants = body.get("tenants") if isinstance(body, dict) else None
    if not isinstance(tenants, dict):
        raise Unreadable("/routes: not a router's routing view (no tenants)")
    routes = {}
    for slug, entry in tenants.items():
        if isinstance(entry, dict) and entry.get("backend") in ("v1", "v2"):
            refused = entry.get("refused_lock")
            routes[str(slug)] = RouterTenant(entry["backend"], refused if isinstance(refused, str) else None)
    generation = body.get("generation")
    digest = body.get("digest")
    return RouterRoutes(public_url(admin_url), generation if isinstance(generation, int) else 0,
                        digest if isinstance(digest, str) else "", routes)


def read_alerts(prometheus_url: str, timeout_s: float) -> list[Alert]:
    url = prometheus_url.rstrip("/") + "/api/v1/alerts"
    body = fetch_json(url, timeout_s)
    data = body.get("data") if isinstance(body, dict) and body.get("status") == "success" else None
    found = data.get("alerts") if isinstance(data, dict) else None
    if not isinstance(found, list):
        raise Unreadable("/api/v1/alerts: not Prometheus' alerts API")
    alerts = []
    for item in found[:MAX_ALERTS]:
        if not isinstance(item, dict) or item.get("state") != "firing":
            continue
        labels, annotations = _mapping(item.get("labels")), _mapping(item.get("annotations"))
        tenant = labels.get("tenant")
        alerts.append(Alert(str(labels.get("alertname", "?")), str(labels.get("severity", "")),
                            tenant if isinstance(tenant, str) else None, str(annotations.get("summary", "")),
                            str(item.get("activeAt", ""))))
    return alerts


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}



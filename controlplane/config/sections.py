"""The optional sections of the routing file: nginx, shadow (per tenant and router-wide), rollout, and an
upstream's health check."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Final

from controlplane.config.collector import Collector, Path_, check_url
from controlplane.config.model import (
    ROUTE_CLASSES,
    CutoverPolicy,
    HealthCheck,
    NginxSpec,
    RolloutPolicy,
    ServerLimits,
    ShadowLimits,
    ShadowSpec,
    TlsSpec,
)
from controlplane.config.site import api_paths, site_spec, url_path

ROLLOUT_KEYS: Final = {f.name for f in dataclasses.fields(RolloutPolicy) if f.name != "soak_s"} | {"soak_hours"}

_FRACTIONS: Final = {"alpha", "beta", "error_floor_abs", "error_floor_rel", "error_detect", "assumed_baseline",
                     "slo_target", "mismatch_floor", "mismatch_detect"}

SHADOW_KEYS: Final = {"enabled", "sample_rate", "routes", "max_body_bytes", "ignore", "case_insensitive",
                      "numeric_tolerance", "ignore_extra_fields", "noise_sample_rate", "ignore_entirely",
                      "state_fields", "not_replicated_recheck_s"}
MAX_RECHECK_S: Final = 60.0  # a re-asked copy is held in memory until then

SHADOW_LIMIT_KEYS: Final = {"queue_size", "concurrency", "timeout_s"}

MAX_MIRRORED_BODY_BYTES: Final = 1024 * 1024

# Upper bounds: every number is finite and sensible, so no count makes the router allocate without
# end and no duration means "never".
MAX_HOURS: Final = 24 * 365  # soak and shadow windows
MAX_COUNT: Final = 1_000_000_000  # request and comparison minimums
MAX_FACTOR: Final = 1_000_000  # burn rates, latency ratios
MAX_TOLERANCE: Final = 1e12  # numeric_tolerance, in the compared values' own units
SHADOW_LIMIT_BOUNDS: Final = {"queue_size": (True, 1, 1_000_000), "concurrency": (True, 1, 10_000),
                              "timeout_s": (False, 0.01, 300.0)}

_JSON_PATH_RE: Final = re.compile(r"\$(\.[A-Za-z0-9_-]+|\[([0-9]+|\*)\])*")

NGINX_KEYS: Final = {"router_url", "listen_ports", "tls", "access_log", "default_server", "keepalive", "api_paths",
                     "site"}

TLS_KEYS: Final = {"port", "certificate", "certificate_key"}

HEALTH_KEYS: Final = {"path", "expect_status", "tcp"}

_NGINX_PATH_RE: Final = re.compile(r"/[A-Za-z0-9._/-]+")


def _nginx_path(c: Collector, value: Any, path: Path_) -> str | None:
    text = c.string(value, path)
    if text is not None and not _NGINX_PATH_RE.fullmatch(text):
        c.add(path, f"'{text}' must be an absolute path of letters, digits, '.', '_', '-' and '/'")
        return None
    return text

def _port(c: Collector, value: Any, path: Path_) -> int | None:
    number = c.number(value, path, minimum=1, maximum=None, integer=True)
    if number is not None and number > 65535:
        c.add(path, f"{int(number)} is not a TCP port")
        return None
    return None if number is None else int(number)

def nginx_section(c: Collector, raw: Any) -> NginxSpec:
    spec = NginxSpec()
    if not c.mapping(raw, ("nginx",), NGINX_KEYS, set()):
        return spec
    kwargs: dict[str, Any] = {}
    if "router_url" in raw:
        url = c.string(raw["router_url"], ("nginx", "router_url"))
        if url is not None and (checked := check_url(c, url, ("nginx", "router_url"))) is not None:
            kwargs["router_url"] = checked
    if "listen_ports" in raw:
        ports = raw["listen_ports"]
        if not isinstance(ports, list) or not ports:
            c.add(("nginx", "listen_ports"), "must be a non-empty list of ports")
        else:
            checked_ports = [_port(c, p, ("nginx", "listen_ports", i)) for i, p in enumerate(ports)]
            kwargs["listen_ports"] = tuple(p for p in checked_ports if p is not None)
    if "access_log" in raw and (log := _nginx_path(c, raw["access_log"], ("nginx", "access_log"))):
        kwargs["access_log"] = log
    if "default_server" in raw:
        if not isinstance(raw["default_server"], bool):
            c.add(("nginx", "default_server"), "must be true or false")
        else:
            kwargs["default_server"] = raw["default_server"]
    if "keepalive" in raw and (n := c.number(raw["keepalive"], ("nginx", "keepalive"), minimum=1, maximum=10_000,
                                                   integer=True)):
        kwargs["keepalive"] = int(n)
    if "tls" in raw and c.mapping(raw["tls"], ("nginx", "tls"), TLS_KEYS, TLS_KEYS):
        tls = raw["tls"]
        port = _port(c, tls.get("port"), ("nginx", "tls", "port"))
        cert = _nginx_path(c, tls.get("certificate"), ("nginx", "tls", "certificate"))
        key = _nginx_path(c, tls.get("certificate_key"), ("nginx", "tls", "certificate_key"))
        if port is not None and cert and key:
            kwargs["tls"] = TlsSpec(port, cert, key)
    if "api_paths" in raw and (paths := api_paths(c, raw["api_paths"], ("nginx", "api_paths"))) is not None:
        kwargs["api_paths"] = paths
    if "site" in raw and (site := site_spec(c, raw["site"], ("nginx", "site"))) is not None:
        kwargs["site"] = site
    return dataclasses.replace(spec, **kwargs)

def health_section(c: Collector, raw: Any, path: Path_) -> HealthCheck | None:
    """`upstreams.<name>.health`: `{path: /health, expect_status: 200}` (either may be left out) or `{tcp: true}`."""
    if not c.mapping(raw, path, HEALTH_KEYS, set()):
        return None
    if "tcp" in raw:
        if raw["tcp"] is not True:
            c.add((*path, "tcp"), "must be true (leave it out for an HTTP check)")
            return None
        for key in sorted(raw.keys() & {"path", "expect_status"}):
            c.add((*path, key), "a TCP check sends no request: leave out path and expect_status, or tcp")
        return HealthCheck(tcp=True) if not raw.keys() & {"path", "expect_status"} else None
    check = HealthCheck()
    checked_path = url_path(c, raw["path"], (*path, "path")) if "path" in raw else check.path
    status = c.number(raw["expect_status"], (*path, "expect_status"), minimum=100, maximum=599, integer=True) \
        if "expect_status" in raw else check.expect_status
    if checked_path is None or status is None:
        return None
    return HealthCheck(path=checked_path, expect_status=int(status))


def _fraction(c: Collector, value: Any, path: Path_) -> float | None:
    number = c.number(value, path, minimum=0, maximum=None)
    if number is not None and number > 1:
        c.add(path, f"must be between 0 and 1, got {value}")
        return None
    return number

def _json_paths(c: Collector, value: Any, path: Path_) -> frozenset[str]:
    out = set()
    for item_path, text in c.string_list(value, path):
        if not _JSON_PATH_RE.fullmatch(text):
            c.add(item_path, f"'{text}' is not a JSON path such as $.token or $.items[*].id")
        else:
            out.add(text)
    return frozenset(out)

def shadow_section(c: Collector, raw: Any, path: Path_) -> ShadowSpec | None:
    if not c.mapping(raw, path, SHADOW_KEYS, set()):
        return None
    if raw.get("enabled", True) is False:
        return None
    if "enabled" in raw and not isinstance(raw["enabled"], bool):
        c.add((*path, "enabled"), "must be true or false")
    spec = ShadowSpec()
    kwargs: dict[str, Any] = {}
    for key in ("sample_rate", "noise_sample_rate"):
        if key in raw and (n := _fraction(c, raw[key], (*path, key))) is not None:
            kwargs[key] = n
    if "routes" in raw:
        routes = set()
        for item_path, text in c.string_list(raw["routes"], (*path, "routes")):
            if text not in ROUTE_CLASSES:
                c.add(item_path, f"unknown route class '{text}' (expected {', '.join(ROUTE_CLASSES)})")
            elif text == "admin":
                c.add(item_path, "admin routes are never mirrored")
            else:
                routes.add(text)
        kwargs["routes"] = frozenset(routes)
    if "max_body_bytes" in raw and (n := c.number(raw["max_body_bytes"], (*path, "max_body_bytes"), minimum=0,
                                                   maximum=None, integer=True)) is not None:
        if n > MAX_MIRRORED_BODY_BYTES:
            c.add((*path, "max_body_bytes"), f"at most {MAX_MIRRORED_BODY_BYTES} (a mirrored body is held in memory)")
        else:
            kwargs["max_body_bytes"] = int(n)
    if "ignore" in raw:
        kwargs["ignore"] = _json_paths(c, raw["ignore"], (*path, "ignore"))
    for key in ("ignore_entirely", "state_fields"):
        if key in raw:
            kwargs[key] = _json_paths(c, raw[key], (*path, key))
    if "not_replicated_recheck_s" in raw and (n := c.number(
            raw["not_replicated_recheck_s"], (*path, "not_replicated_recheck_s"), minimum=0,
            maximum=MAX_RECHECK_S)) is not None:
        kwargs["not_replicated_recheck_s"] = n
    if "case_insensitive" in raw:
        kwargs["case_insensitive"] = _json_paths(c, raw["case_insensitive"], (*path, "case_insensitive"))
    if "numeric_tolerance" in raw and (n := c.number(raw["numeric_tolerance"], (*path, "numeric_tolerance"),
                                                      minimum=0, maximum=MAX_TOLERANCE)) is not None:
        kwargs["numeric_tolerance"] = n
    if "ignore_extra_fields" in raw:
        if not isinstance(raw["ignore_extra_fields"], bool):
            c.add((*path, "ignore_extra_fields"), "must be true or false")
        else:
            kwargs["ignore_extra_fields"] = raw["ignore_extra_fields"]
    return dataclasses.replace(spec, **kwargs)

def rollout_section(c: Collector, raw: Any) -> RolloutPolicy:
    policy = RolloutPolicy()
    if not c.mapping(raw, ("rollout",), ROLLOUT_KEYS, set()):
        return policy
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in ROLLOUT_KEYS:
            continue
        if key == "soak_hours":
            if (hours := c.number(value, ("rollout", key), minimum=0.01, maximum=MAX_HOURS)) is not None:
                kwargs["soak_s"] = hours * 3600
            continue
        integer = isinstance(getattr(policy, key), int)
        number = _fraction(c, value, ("rollout", key)) if key in _FRACTIONS else c.number(
            value, ("rollout", key), minimum=1 if integer else 0, maximum=MAX_COUNT if integer else MAX_FACTOR,
            integer=integer)
        if number is not None:
            kwargs[key] = int(number) if integer else number
    if "alpha" in kwargs and not 0 < kwargs["alpha"] < 0.5:
        c.add(("rollout", "alpha"), "must be between 0 and 0.5 (the bound on false rollbacks)")
    return dataclasses.replace(policy, **kwargs)

def shadow_limits_section(c: Collector, raw: Any) -> ShadowLimits:
    limits = ShadowLimits()
    if not c.mapping(raw, ("shadow",), SHADOW_LIMIT_KEYS, set()):
        return limits
    kwargs: dict[str, Any] = {}
    for key, (integer, minimum, maximum) in SHADOW_LIMIT_BOUNDS.items():
        if key in raw and (n := c.number(raw[key], ("shadow", key), minimum=minimum, maximum=maximum,
                                         integer=integer)) is not None:
            kwargs[key] = int(n) if integer else n
    return dataclasses.replace(limits, **kwargs)

CUTOVER_KEYS: Final = {"min_match_rate", "min_comparisons", "shadow_window_hours", "grace_minutes", "router_wait_s",
                       "reverse_sync_lag_s", "hold_s"}


def cutover_section(c: Collector, raw: Any) -> CutoverPolicy:
    policy = CutoverPolicy()
    if not c.mapping(raw, ("cutover",), CUTOVER_KEYS, set()):
        return policy
    kwargs: dict[str, Any] = {}
    if "min_match_rate" in raw and (n := _fraction(c, raw["min_match_rate"],
                                                   ("cutover", "min_match_rate"))) is not None:
        kwargs["min_match_rate"] = n
    if "min_comparisons" in raw and (n := c.number(raw["min_comparisons"], ("cutover", "min_comparisons"), minimum=0,
                                                    maximum=MAX_COUNT, integer=True)) is not None:
        kwargs["min_comparisons"] = int(n)
    if "shadow_window_hours" in raw and (n := c.number(raw["shadow_window_hours"], ("cutover", "shadow_window_hours"),
                                                        minimum=0.01, maximum=MAX_HOURS)) is not None:
        kwargs["shadow_window_s"] = n * 3600
    for key, minimum, maximum in (("grace_minutes", 0.0, 7 * 24 * 60.0), ("router_wait_s", 0.1, 3600.0),
                                  ("reverse_sync_lag_s", 1.0, 24 * 3600.0), ("hold_s", 0.05, 30.0)):
        if key in raw and (n := c.number(raw[key], ("cutover", key), minimum=minimum, maximum=maximum)) is not None:
            kwargs[key] = n
    return dataclasses.replace(policy, **kwargs)


# key: (integer, minimum, maximum); a timeout is finite (.inf would mean "never")
LIMIT_BOUNDS: Final = {"header_timeout_s": (False, 0.1, 300.0), "keepalive_timeout_s": (False, 0.1, 3600.0),
                       "body_timeout_s": (False, 0.1, 3600.0), "max_connections": (True, 1, 1_000_000),
                       "tenant_pool_share": (False, 0.01, 1.0)}


def limits_section(c: Collector, raw: Any) -> ServerLimits:
    limits = ServerLimits()
    if not c.mapping(raw, ("limits",), set(LIMIT_BOUNDS), set()):
        return limits
    kwargs: dict[str, Any] = {}
    for key, (integer, minimum, maximum) in LIMIT_BOUNDS.items():
        if key in raw and (n := c.number(raw[key], ("limits", key), minimum=minimum, maximum=maximum,
                                         integer=integer)) is not None:
            kwargs[key] = int(n) if integer else n
    return dataclasses.replace(limits, **kwargs)

"""The optional sections of the routing file: nginx, shadow (per tenant and router-wide), rollout."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Final

from controlplane.config.collector import Collector, Path_, check_url
from controlplane.config.model import (
    ROUTE_CLASSES,
    CutoverPolicy,
    NginxSpec,
    RolloutPolicy,
    ShadowLimits,
    ShadowSpec,
    TlsSpec,
)

ROLLOUT_KEYS: Final = {f.name for f in dataclasses.fields(RolloutPolicy) if f.name != "soak_s"} | {"soak_hours"}

_FRACTIONS: Final = {"alpha", "beta", "error_floor_abs", "error_floor_rel", "error_detect", "assumed_baseline",
                     "slo_target", "mismatch_floor", "mismatch_detect"}

SHADOW_KEYS: Final = {"enabled", "sample_rate", "routes", "max_body_bytes", "ignore", "case_insensitive",
                      "numeric_tolerance", "ignore_extra_fields", "noise_sample_rate"}

SHADOW_LIMIT_KEYS: Final = {"queue_size", "concurrency", "timeout_s"}

MAX_MIRRORED_BODY_BYTES: Final = 1024 * 1024

_JSON_PATH_RE: Final = re.compile(r"^\$(\.[A-Za-z0-9_-]+|\[(\d+|\*)\])*$")

NGINX_KEYS: Final = {"router_url", "listen_ports", "tls", "access_log", "default_server", "keepalive"}

TLS_KEYS: Final = {"port", "certificate", "certificate_key"}

_NGINX_PATH_RE: Final = re.compile(r"^/[A-Za-z0-9._/-]+$")


def _nginx_path(c: Collector, value: Any, path: Path_) -> str | None:
    text = c.string(value, path)
    if text is not None and not _NGINX_PATH_RE.match(text):
        c.add(path, f"'{text}' must be an absolute path of letters, digits, '.', '_', '-' and '/'")
        return None
    return text

def _port(c: Collector, value: Any, path: Path_) -> int | None:
    number = c.number(value, path, minimum=1, integer=True)
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
    if "keepalive" in raw and (n := c.number(raw["keepalive"], ("nginx", "keepalive"), minimum=1, integer=True)):
        kwargs["keepalive"] = int(n)
    if "tls" in raw and c.mapping(raw["tls"], ("nginx", "tls"), TLS_KEYS, TLS_KEYS):
        tls = raw["tls"]
        port = _port(c, tls.get("port"), ("nginx", "tls", "port"))
        cert = _nginx_path(c, tls.get("certificate"), ("nginx", "tls", "certificate"))
        key = _nginx_path(c, tls.get("certificate_key"), ("nginx", "tls", "certificate_key"))
        if port is not None and cert and key:
            kwargs["tls"] = TlsSpec(port, cert, key)
    return dataclasses.replace(spec, **kwargs)

def _fraction(c: Collector, value: Any, path: Path_) -> float | None:
    number = c.number(value, path, minimum=0)
    if number is not None and number > 1:
        c.add(path, f"must be between 0 and 1, got {value}")
        return None
    return number

def _json_paths(c: Collector, value: Any, path: Path_) -> frozenset[str]:
    out = set()
    for item_path, text in c.string_list(value, path):
        if not _JSON_PATH_RE.match(text):
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
                                                   integer=True)) is not None:
        if n > MAX_MIRRORED_BODY_BYTES:
            c.add((*path, "max_body_bytes"), f"at most {MAX_MIRRORED_BODY_BYTES} (a mirrored body is held in memory)")
        else:
            kwargs["max_body_bytes"] = int(n)
    if "ignore" in raw:
        kwargs["ignore"] = _json_paths(c, raw["ignore"], (*path, "ignore"))
    if "case_insensitive" in raw:
        kwargs["case_insensitive"] = _json_paths(c, raw["case_insensitive"], (*path, "case_insensitive"))
    if "numeric_tolerance" in raw and (n := c.number(raw["numeric_tolerance"], (*path, "numeric_tolerance"),
                                                      minimum=0)) is not None:
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
            if (hours := c.number(value, ("rollout", key), minimum=0.01)) is not None:
                kwargs["soak_s"] = hours * 3600
            continue
        integer = isinstance(getattr(policy, key), int)
        number = _fraction(c, value, ("rollout", key)) if key in _FRACTIONS else c.number(
            value, ("rollout", key), minimum=1 if integer else 0, integer=integer)
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
    for key, integer, minimum in (("queue_size", True, 1), ("concurrency", True, 1), ("timeout_s", False, 0.01)):
        if key in raw and (n := c.number(raw[key], ("shadow", key), minimum=minimum, integer=integer)) is not None:
            kwargs[key] = int(n) if integer else n
    return dataclasses.replace(limits, **kwargs)

CUTOVER_KEYS: Final = {"min_match_rate", "min_comparisons", "shadow_window_hours", "grace_minutes", "router_wait_s"}


def cutover_section(c: Collector, raw: Any) -> CutoverPolicy:
    policy = CutoverPolicy()
    if not c.mapping(raw, ("cutover",), CUTOVER_KEYS, set()):
        return policy
    kwargs: dict[str, Any] = {}
    if "min_match_rate" in raw and (n := _fraction(c, raw["min_match_rate"],
                                                   ("cutover", "min_match_rate"))) is not None:
        kwargs["min_match_rate"] = n
    if "min_comparisons" in raw and (n := c.number(raw["min_comparisons"], ("cutover", "min_comparisons"), minimum=0,
                                                    integer=True)) is not None:
        kwargs["min_comparisons"] = int(n)
    if "shadow_window_hours" in raw and (n := c.number(raw["shadow_window_hours"], ("cutover", "shadow_window_hours"),
                                                        minimum=0.01)) is not None:
        kwargs["shadow_window_s"] = n * 3600
    for key, minimum in (("grace_minutes", 0.0), ("router_wait_s", 0.1)):
        if key in raw and (n := c.number(raw[key], ("cutover", key), minimum=minimum)) is not None:
            kwargs[key] = n
    return dataclasses.replace(policy, **kwargs)

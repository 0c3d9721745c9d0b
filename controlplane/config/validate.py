"""Turn a loaded routing document into a RoutingConfig, reporting every problem in one pass."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import ipaddress
import re
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import urlsplit

from controlplane.config.issues import ConfigError, ConfigIssue, PathKey
from controlplane.config.load import LoadedDocument, parse_document, read_document
from controlplane.config.model import (
    BACKENDS,
    DEFAULT_TRUSTED_PROXIES,
    ROUTE_CLASSES,
    SLUG_RE,
    Backend,
    IPNetwork,
    NginxSpec,
    RolloutPolicy,
    RoutingConfig,
    ShadowLimits,
    ShadowSpec,
    TenantSpec,
    TlsSpec,
    UpstreamSpec,
)

_LABEL_RE: Final = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

TOP_KEYS: Final = {"upstreams", "base_domain", "platform_subdomains", "trusted_proxies", "tenants", "nginx", "shadow",
                   "rollout"}
UPSTREAM_KEYS: Final = {"url", "connect_timeout_s", "read_timeout_s", "pool_size"}
TENANT_KEYS: Final = {"backend", "hosts", "via", "shadow", "rollout"}
# The routing file says soak_hours; the policy keeps seconds.
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

Path_ = tuple[PathKey, ...]


def is_hostname(value: str) -> bool:
    """A lower-case DNS name of labels (no port, no trailing dot, no wildcard)."""
    if not value or len(value) > 253:
        return False
    return all(_LABEL_RE.match(label) for label in value.split("."))


class _Collector:
    """Walks the document; every check adds issues instead of stopping at the first."""

    def __init__(self, doc: LoadedDocument) -> None:
        self.doc = doc
        self.issues: list[ConfigIssue] = list(doc.issues)

    def add(self, path: Path_, message: str) -> None:
        self.issues.append(self.doc.issue(path, message))

    def mapping(self, value: Any, path: Path_, allowed: set[str], required: set[str]) -> bool:
        if not isinstance(value, dict):
            self.add(path, f"must be a mapping, got {_kind(value)}")
            return False
        for key in value:
            if key not in allowed:
                hint = _closest(key, allowed)
                self.add((*path, key), "unknown key" + (f" (did you mean '{hint}'?)" if hint else ""))
        for key in sorted(required - value.keys()):
            self.add(path, f"missing required key '{key}'")
        return True

    def string(self, value: Any, path: Path_) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.add(path, f"must be a non-empty string, got {_kind(value)}")
            return None
        return value.strip()

    def number(self, value: Any, path: Path_, *, minimum: float, integer: bool = False) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            self.add(path, f"must be {'an integer' if integer else 'a number'}, got {_kind(value)}")
            return None
        if value < minimum:
            self.add(path, f"must be at least {minimum:g}, got {value}")
            return None
        return float(value)

    def string_list(self, value: Any, path: Path_) -> list[tuple[Path_, str]]:
        if not isinstance(value, list):
            self.add(path, f"must be a list, got {_kind(value)}")
            return []
        out = []
        for index, item in enumerate(value):
            text = self.string(item, (*path, index))
            if text is not None:
                out.append(((*path, index), text))
        return out


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _closest(key: str, allowed: set[str]) -> str | None:
    matches = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _upstream(c: _Collector, name: Backend, value: Any, path: Path_) -> UpstreamSpec | None:
    if not c.mapping(value, path, UPSTREAM_KEYS, {"url"}):
        return None
    url = c.string(value.get("url"), (*path, "url")) if "url" in value else None
    if url is not None:
        url = _check_url(c, url, (*path, "url"))
    kwargs: dict[str, Any] = {}
    for key, minimum, integer in (
        ("connect_timeout_s", 0.001, False),
        ("read_timeout_s", 0.001, False),
        ("pool_size", 1, True),
    ):
        if key in value:
            number = c.number(value[key], (*path, key), minimum=minimum, integer=integer)
            if number is not None:
                kwargs[key] = int(number) if integer else number
    if url is None:
        return None
    return UpstreamSpec(name=name, url=url, **kwargs)


def _check_url(c: _Collector, url: str, path: Path_) -> str | None:
    if "://" not in url:
        c.add(path, f"'{url}' is not a URL such as http://127.0.0.1:3002")
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        c.add(path, f"not a valid URL: {exc}")
        return None
    problems = []
    if parts.scheme not in ("http", "https"):
        problems.append("scheme must be http or https")
    if not parts.hostname:
        problems.append("a host is required")
    if parts.username or parts.password:
        problems.append("credentials do not belong in the URL")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        problems.append("no path, query or fragment: the request's own path is forwarded")
    if problems:
        c.add(path, f"'{url}': " + "; ".join(problems))
        return None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{netloc}" + (f":{port}" if port is not None else "")


def _network(c: _Collector, text: str, path: Path_) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        c.add(path, f"not an IP network in CIDR form: {exc}")
        return None


def build_config(doc: LoadedDocument, digest: str = "") -> RoutingConfig:
    """Validate the whole document; raise ConfigError listing every issue."""
    c = _Collector(doc)
    data = doc.data
    if not c.mapping(data, (), TOP_KEYS, {"upstreams", "base_domain", "tenants"}):
        raise ConfigError(tuple(c.issues))

    upstreams: dict[Backend, UpstreamSpec] = {}
    raw_upstreams = data.get("upstreams")
    if "upstreams" in data and c.mapping(raw_upstreams, ("upstreams",), set(BACKENDS), set(BACKENDS)):
        for name in BACKENDS:
            if name in raw_upstreams:
                spec = _upstream(c, name, raw_upstreams[name], ("upstreams", name))
                if spec is not None:
                    upstreams[name] = spec

    base_domain = ""
    if "base_domain" in data:
        text = c.string(data["base_domain"], ("base_domain",))
        if text is not None:
            base_domain = text.lower().rstrip(".")
            if not is_hostname(base_domain) or "." not in base_domain:
                c.add(("base_domain",), f"'{text}' is not a domain name such as agentbar.ai")

    platform: set[str] = set()
    for path, text in c.string_list(data.get("platform_subdomains", []), ("platform_subdomains",)):
        label = text.lower()
        if not _LABEL_RE.match(label):
            c.add(path, f"'{text}' is not a single DNS label")
        elif label in platform:
            c.add(path, f"'{label}' is listed twice")
        platform.add(label)

    trusted: list[IPNetwork] = []
    raw_trusted = data.get("trusted_proxies", list(DEFAULT_TRUSTED_PROXIES))
    for path, text in c.string_list(raw_trusted, ("trusted_proxies",)):
        network = _network(c, text, path)
        if network is not None:
            trusted.append(network)

    tenants = _tenants(c, data.get("tenants"), base_domain, platform)
    nginx = _nginx(c, data["nginx"]) if "nginx" in data else NginxSpec()
    limits = _shadow_limits(c, data["shadow"]) if "shadow" in data else ShadowLimits()
    rollout = _rollout(c, data["rollout"]) if "rollout" in data else RolloutPolicy()
    if c.issues:
        raise ConfigError(tuple(sorted(c.issues, key=lambda i: (i.line, i.path))))
    return RoutingConfig(
        upstreams=upstreams,
        base_domain=base_domain,
        platform_subdomains=frozenset(platform),
        trusted_proxies=tuple(trusted),
        tenants=tenants,
        nginx=nginx,
        shadow_limits=limits,
        rollout=rollout,
        source=doc.source,
        digest=digest,
    )


def _tenants(
    c: _Collector, raw: Any, base_domain: str, platform: set[str]
) -> dict[str, TenantSpec]:
    tenants: dict[str, TenantSpec] = {}
    if raw is None:  # `tenants:` with nothing under it: no tenants yet
        return tenants
    if not isinstance(raw, dict):
        c.add(("tenants",), f"must be a mapping of slug to tenant, got {_kind(raw)}")
        return tenants
    claimed: dict[str, tuple[str, Path_]] = {}  # host -> (slug, where)
    for slug in raw:
        path: Path_ = ("tenants", slug)
        entry = raw[slug]
        if not SLUG_RE.match(str(slug)):
            c.add(path, f"'{slug}' is not a valid slug (lower-case letters, digits and '-', "
                        "1-63 characters, not starting or ending with '-')")
        elif slug in platform:
            c.add(path, f"'{slug}' is a platform subdomain, not a tenant")
        if not c.mapping(entry, path, TENANT_KEYS, {"backend"}):
            continue
        backend = entry.get("backend")
        if "backend" in entry and backend not in BACKENDS:
            c.add((*path, "backend"), f"unknown backend '{backend}' (expected one of: "
                                       + ", ".join(BACKENDS) + ")")
        hosts: list[str] = []
        for host_path, text in c.string_list(entry.get("hosts", []), (*path, "hosts")):
            host = text.lower().rstrip(".")
            if not is_hostname(host):
                c.add(host_path, f"'{text}' is not a host name (no scheme, port or wildcard)")
                continue
            if base_domain and host.endswith("." + base_domain):
                label = host[: -len(base_domain) - 1]
                if label in platform:
                    c.add(host_path, f"'{host}' is a platform host, not a tenant host")
                    continue
            if host == base_domain:
                c.add(host_path, f"'{host}' is the base domain itself, not a tenant host")
                continue
            hosts.append(host)
        implicit = f"{slug}.{base_domain}" if base_domain else None
        for index, host in enumerate(hosts):
            if host in claimed and claimed[host][0] != slug:
                other = claimed[host][0]
                c.add((*path, "hosts", index),
                      f"host '{host}' is already claimed by tenant '{other}' "
                      f"(line {c.doc.line_of(claimed[host][1])})")
            elif host in claimed:
                c.add((*path, "hosts", index), f"host '{host}' is listed twice")
            else:
                claimed[host] = (slug, (*path, "hosts", index))
        if implicit is not None:
            if implicit in claimed and claimed[implicit][0] != slug:
                other_path = claimed[implicit][1]
                c.add(other_path,
                      f"host '{implicit}' belongs to tenant '{slug}' by its slug "
                      f"(line {c.doc.line_of(path)})")
            claimed.setdefault(implicit, (slug, path))
        via = entry.get("via", "router")
        if via not in ("router", "direct"):
            c.add((*path, "via"), f"via must be router or direct, not '{via}'")
            continue
        shadow = _shadow(c, entry["shadow"], (*path, "shadow")) if "shadow" in entry else None
        soak_s = None
        if "rollout" in entry and c.mapping(entry["rollout"], (*path, "rollout"), {"soak_hours"}, set()) \
                and "soak_hours" in entry["rollout"]:
            hours = c.number(entry["rollout"]["soak_hours"], (*path, "rollout", "soak_hours"), minimum=0.01)
            soak_s = hours * 3600 if hours is not None else None
        if backend in BACKENDS and SLUG_RE.match(str(slug)):
            tenants[slug] = TenantSpec(slug=slug, backend=cast(Backend, backend),
                                       hosts=tuple(dict.fromkeys(hosts)), via=via, shadow=shadow, soak_s=soak_s)
    return tenants


def _nginx_path(c: _Collector, value: Any, path: Path_) -> str | None:
    text = c.string(value, path)
    if text is not None and not _NGINX_PATH_RE.match(text):
        c.add(path, f"'{text}' must be an absolute path of letters, digits, '.', '_', '-' and '/'")
        return None
    return text


def _port(c: _Collector, value: Any, path: Path_) -> int | None:
    number = c.number(value, path, minimum=1, integer=True)
    if number is not None and number > 65535:
        c.add(path, f"{int(number)} is not a TCP port")
        return None
    return None if number is None else int(number)


def _nginx(c: _Collector, raw: Any) -> NginxSpec:
    spec = NginxSpec()
    if not c.mapping(raw, ("nginx",), NGINX_KEYS, set()):
        return spec
    kwargs: dict[str, Any] = {}
    if "router_url" in raw:
        url = c.string(raw["router_url"], ("nginx", "router_url"))
        if url is not None and (checked := _check_url(c, url, ("nginx", "router_url"))) is not None:
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


def _fraction(c: _Collector, value: Any, path: Path_) -> float | None:
    number = c.number(value, path, minimum=0)
    if number is not None and number > 1:
        c.add(path, f"must be between 0 and 1, got {value}")
        return None
    return number


def _json_paths(c: _Collector, value: Any, path: Path_) -> frozenset[str]:
    out = set()
    for item_path, text in c.string_list(value, path):
        if not _JSON_PATH_RE.match(text):
            c.add(item_path, f"'{text}' is not a JSON path such as $.token or $.items[*].id")
        else:
            out.add(text)
    return frozenset(out)


def _shadow(c: _Collector, raw: Any, path: Path_) -> ShadowSpec | None:
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


def _rollout(c: _Collector, raw: Any) -> RolloutPolicy:
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


def _shadow_limits(c: _Collector, raw: Any) -> ShadowLimits:
    limits = ShadowLimits()
    if not c.mapping(raw, ("shadow",), SHADOW_LIMIT_KEYS, set()):
        return limits
    kwargs: dict[str, Any] = {}
    for key, integer, minimum in (("queue_size", True, 1), ("concurrency", True, 1), ("timeout_s", False, 0.01)):
        if key in raw and (n := c.number(raw[key], ("shadow", key), minimum=minimum, integer=integer)) is not None:
            kwargs[key] = int(n) if integer else n
    return dataclasses.replace(limits, **kwargs)


def load_config(path: str | Path) -> RoutingConfig:
    """Read, parse and validate a routing file; raise ConfigError with every issue."""
    doc, raw = read_document(path)
    return build_config(doc, digest=hashlib.sha256(raw).hexdigest())


def load_config_text(text: str, source: str = "<text>") -> RoutingConfig:
    doc = parse_document(text, source)
    return build_config(doc, digest=hashlib.sha256(text.encode()).hexdigest())

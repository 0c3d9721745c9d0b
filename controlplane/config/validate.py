"""Turn a loaded routing document into a RoutingConfig, reporting every problem in one pass."""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path
from typing import Any, Final, cast

from controlplane.config.collector import LABEL_RE, Collector, Path_, check_url, is_hostname, kind_of
from controlplane.config.issues import ConfigError
from controlplane.config.load import LoadedDocument, decode, parse_document, unexpected_as_issue
from controlplane.config.model import (
    BACKENDS,
    DEFAULT_TRUSTED_PROXIES,
    SLUG_RE,
    Backend,
    CutoverPolicy,
    IPNetwork,
    NginxSpec,
    RolloutPolicy,
    RoutingConfig,
    ServerLimits,
    ShadowLimits,
    TenantSpec,
    UpstreamSpec,
)
from controlplane.config.read import read_regular
from controlplane.config.sections import (
    MAX_HOURS,
    cutover_section,
    health_section,
    limits_section,
    nginx_section,
    rollout_section,
    shadow_limits_section,
    shadow_section,
)
from controlplane.config.site import tenant_sites

TOP_KEYS: Final = {"upstreams", "base_domain", "platform_subdomains", "trusted_proxies", "tenants", "nginx", "shadow",
                   "rollout", "cutover", "limits"}
UPSTREAM_KEYS: Final = {"url", "connect_timeout_s", "read_timeout_s", "pool_size", "tenants", "health"}
# key, minimum, maximum, integer: a timeout is finite (.inf would let pool waits never end)
UPSTREAM_NUMBERS: Final = (("connect_timeout_s", 0.001, 300.0, False), ("read_timeout_s", 0.001, 3600.0, False),
                           ("pool_size", 1, 10_000, True))
TENANT_KEYS: Final = {"backend", "hosts", "via", "shadow", "rollout", "webhooks", "site"}
# The routing file says soak_hours; the policy keeps seconds.
def _upstream(c: Collector, name: Backend, value: Any, path: Path_) -> UpstreamSpec | None:
    if not c.mapping(value, path, UPSTREAM_KEYS, {"url"}):
        return None
    url = c.string(value.get("url"), (*path, "url")) if "url" in value else None
    if url is not None:
        url = check_url(c, url, (*path, "url"))
    kwargs: dict[str, Any] = {}
    for key, minimum, maximum, integer in UPSTREAM_NUMBERS:
        if key in value:
            number = c.number(value[key], (*path, key), minimum=minimum, maximum=maximum, integer=integer)
            if number is not None:
                kwargs[key] = int(number) if integer else number
    if "health" in value:
        health = health_section(c, value["health"], (*path, "health"))
        if health is None:
            return None
        kwargs["health"] = health
    if url is None:
        return None
    return UpstreamSpec(name=name, url=url, **kwargs)


def _v1_tenants(c: Collector, raw: dict[str, Any], tenants: dict[str, TenantSpec],
                named: frozenset[str]) -> frozenset[str] | None:
    """`upstreams.v1.tenants`: whose orders v1's database holds (v1 is single-tenant); None when the
    file does not say."""
    if isinstance(raw.get("v2"), dict) and "tenants" in raw["v2"]:
        c.add(("upstreams", "v2", "tenants"), "v2 is multi-tenant: it keeps each tenant's orders apart by itself")
    if not isinstance(raw.get("v1"), dict) or "tenants" not in raw["v1"]:
        return None
    found = set()
    for path, slug in c.string_list(raw["v1"]["tenants"], ("upstreams", "v1", "tenants")):
        if slug not in named:  # a tenant with issues of its own is still a tenant of the file
            c.add(path, f"'{slug}' is not a tenant of this file")
        found.add(slug)
    held = _some(found)
    for slug, tenant in tenants.items():
        if tenant.backend == "v1" and slug not in found:
            c.add(("tenants", slug, "backend"),
                  f"v1 does not hold {slug}'s orders (upstreams.v1.tenants: {held}): "
                  f"v1 is single-tenant, so it would serve {slug}'s customers another tenant's orders")
    return frozenset(found)


def _some(slugs: set[str], shown: int = 5) -> str:
    """A few slugs of a set, for a message that stays short however many tenants the file has."""
    if not slugs:
        return "none"
    first = sorted(slugs)[:shown]
    more = f" and {len(slugs) - shown} more" if len(slugs) > shown else ""
    return ", ".join(first) + more


def _network(c: Collector, text: str, path: Path_) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        c.add(path, f"not an IP network in CIDR form: {exc}")
        return None


def build_config(doc: LoadedDocument, digest: str = "") -> RoutingConfig:
    """Validate the whole document; raise ConfigError listing every issue (and nothing else)."""
    with unexpected_as_issue(doc.source, "validate the file"):
        return _build(doc, digest)


def _build(doc: LoadedDocument, digest: str) -> RoutingConfig:
    c = Collector(doc)
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
        if not LABEL_RE.fullmatch(label):
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
    tenants = tenant_sites(c, data.get("tenants"), tenants)
    raw_tenants = data.get("tenants")
    named = frozenset(str(k) for k in raw_tenants) if isinstance(raw_tenants, dict) else frozenset()
    declared = _v1_tenants(c, raw_upstreams, tenants, named) if isinstance(raw_upstreams, dict) else None
    if declared is None:
        for slug in sorted(s for s, t in tenants.items() if t.backend == "v1"):
            c.add(("tenants", slug, "backend"), f"{slug} is on v1, but the file does not say whose orders v1 "
                  "holds: list them in upstreams.v1.tenants (v1 is single-tenant; only a tenant listed there "
                  "may be served by it, or moved back to it)")
    nginx = nginx_section(c, data["nginx"]) if "nginx" in data else NginxSpec()
    limits = shadow_limits_section(c, data["shadow"]) if "shadow" in data else ShadowLimits()
    rollout = rollout_section(c, data["rollout"]) if "rollout" in data else RolloutPolicy()
    cutover = cutover_section(c, data["cutover"]) if "cutover" in data else CutoverPolicy()
    server_limits = limits_section(c, data["limits"]) if "limits" in data else ServerLimits()
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
        cutover=cutover,
        limits=server_limits,
        v1_tenants=declared or frozenset(),
        v1_tenants_declared=declared is not None,
        source=doc.source,
        digest=digest,
    )


def _tenants(
    c: Collector, raw: Any, base_domain: str, platform: set[str]
) -> dict[str, TenantSpec]:
    tenants: dict[str, TenantSpec] = {}
    if raw is None:  # `tenants:` with nothing under it: no tenants yet
        return tenants
    if not isinstance(raw, dict):
        c.add(("tenants",), f"must be a mapping of slug to tenant, got {kind_of(raw)}")
        return tenants
    claimed: dict[str, tuple[str, Path_]] = {}  # host -> (slug, where)
    for slug in raw:
        path: Path_ = ("tenants", slug)
        entry = raw[slug]
        if not SLUG_RE.fullmatch(str(slug)):
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
        webhooks = entry.get("webhooks", "both")
        if webhooks not in ("both", "primary"):
            c.add((*path, "webhooks"), f"webhooks must be both or primary, not '{webhooks}'")
            continue
        shadow = shadow_section(c, entry["shadow"], (*path, "shadow")) if "shadow" in entry else None
        soak_s = None
        if "rollout" in entry and c.mapping(entry["rollout"], (*path, "rollout"), {"soak_hours"}, set()) \
                and "soak_hours" in entry["rollout"]:
            hours = c.number(entry["rollout"]["soak_hours"], (*path, "rollout", "soak_hours"), minimum=0.01,
                             maximum=MAX_HOURS)
            soak_s = hours * 3600 if hours is not None else None
        if backend in BACKENDS and SLUG_RE.fullmatch(str(slug)):
            tenants[slug] = TenantSpec(slug=slug, backend=cast(Backend, backend),
                                       hosts=tuple(dict.fromkeys(hosts)), via=via, shadow=shadow, soak_s=soak_s,
                                       webhooks=webhooks)
    return tenants


def load_config(path: str | Path) -> RoutingConfig:
    """Read, parse and validate a routing file; raise ConfigError with every issue."""
    contents = read_regular(path)
    return load_config_bytes(contents.raw, str(path), contents.digest)


def load_config_bytes(raw: bytes, source: str, digest: str) -> RoutingConfig:
    return build_config(parse_document(decode(raw, source), source), digest=digest)


def load_config_text(text: str, source: str = "<text>") -> RoutingConfig:
    doc = parse_document(text, source)
    return build_config(doc, digest=hashlib.sha256(text.encode()).hexdigest())

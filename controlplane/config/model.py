"""The routing config model: frozen, typed objects shared by the control plane and the router.

Nothing past the loader sees a dict. Both planes read these objects and never change them; a new
file produces a new `RoutingConfig`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal, TypeVar

Backend = Literal["v1", "v2"]
BACKENDS: Final[tuple[Backend, ...]] = ("v1", "v2")

K = TypeVar("K")
V = TypeVar("V")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# A tenant slug is one DNS label: it becomes `<slug>.<base_domain>` and an nginx header value.
SLUG_RE: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")

DEFAULT_TRUSTED_PROXIES: Final[tuple[str, ...]] = ("127.0.0.1/32", "::1/128")


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    """One backend the router forwards to, with its connection budget."""

    name: Backend
    url: str  # scheme://host[:port], no path, no trailing slash
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 30.0
    pool_size: int = 100


Via = Literal["router", "direct"]
# Where a tenant's Midtrans notifications go: both backends (the one serving the tenant answers
# Midtrans, the other applies them too, so each keeps the orders it holds current across a cutover
# and the way back), or the serving backend only.
WebhookDelivery = Literal["both", "primary"]
RouteClass = Literal["read", "write", "webhook", "admin"]
ROUTE_CLASSES: Final[tuple[RouteClass, ...]] = ("read", "write", "webhook", "admin")
DEFAULT_SHADOW_IGNORE: Final = ("$.token", "$.paymentUrl", "$.redirectUrl")


@dataclass(frozen=True, slots=True)
class ShadowSpec:
    """Mirroring of one tenant's requests to the other backend, and how answers are compared."""

    sample_rate: float = 1.0
    # Admin is never mirrored; writes and webhooks only when the shadow is v2 (which runs them dry).
    routes: frozenset[RouteClass] = frozenset({"read", "write", "webhook"})
    max_body_bytes: int = 64 * 1024
    ignore: frozenset[str] = frozenset(DEFAULT_SHADOW_IGNORE)
    case_insensitive: frozenset[str] = frozenset()
    numeric_tolerance: float = 0.0
    ignore_extra_fields: bool = True
    noise_sample_rate: float = 0.05  # safe requests also sent twice to the primary, to learn noise


@dataclass(frozen=True, slots=True)
class ShadowLimits:
    """Bounds on shadow work, per router worker and shadow backend: it may never slow the primary."""

    queue_size: int = 1000
    concurrency: int = 32
    timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class TenantSpec:
    """What ops declare for one tenant."""

    slug: str
    backend: Backend
    hosts: tuple[str, ...] = ()
    # How nginx reaches the backend: through the router (metrics, shadow, live flips) or directly.
    via: Via = "router"
    shadow: ShadowSpec | None = None  # None: not mirrored
    soak_s: float | None = None  # overrides the rollout policy's soak window for this tenant
    webhooks: WebhookDelivery = "both"


@dataclass(frozen=True, slots=True)
class TlsSpec:
    port: int
    certificate: str
    certificate_key: str


@dataclass(frozen=True, slots=True)
class RolloutPolicy:
    """Thresholds of the go/no-go decision (the `rollout:` section of the routing file)."""

    soak_s: float = 24 * 3600
    alpha: float = 0.001  # bound on the false-rollback probability of one soak
    beta: float = 0.05
    error_floor_abs: float = 0.005  # effect-size floor: v2 may be this much worse without harm...
    error_floor_rel: float = 0.5  # ...or this share of the baseline, whichever is larger
    error_detect: float = 0.005  # the extra error rate worth detecting beyond the tolerable one
    assumed_baseline: float = 0.01  # v1's error rate when its history is too short to estimate
    min_requests: int = 50
    slo_target: float = 0.999
    page_burn: float = 14.4
    burn_min_long: int = 200
    burn_min_short: int = 30
    burn_min_errors: int = 5
    latency_ratio_max: float = 1.3
    latency_min_samples: int = 200
    mismatch_floor: float = 0.005
    mismatch_detect: float = 0.01
    min_comparisons: int = 100


@dataclass(frozen=True, slots=True)
class CutoverPolicy:
    """What `dualstack cutover` requires before it moves a tenant (the `cutover:` section)."""

    min_match_rate: float = 0.99  # shadow comparisons that must match, over the window...
    min_comparisons: int = 500  # ...counting at least this many
    shadow_window_s: float = 24 * 3600
    grace_minutes: float = 30.0  # v2 answers notifications for orders it does not know yet with 503
    router_wait_s: float = 30.0  # how long the routers may take to serve the new backend


@dataclass(frozen=True, slots=True)
class NginxSpec:
    """What the generated nginx includes need beyond the routing itself."""

    router_url: str = "http://127.0.0.1:8080"
    listen_ports: tuple[int, ...] = (80,)
    tls: TlsSpec | None = None
    access_log: str = "/var/log/nginx/dualstack.access.log"
    default_server: bool = True  # answer unknown hosts here (off if the host has its own default)
    keepalive: int = 32


def _frozen(mapping: Mapping[K, V]) -> Mapping[K, V]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True, eq=False)
class RoutingConfig:
    """One consistent snapshot of the routing file."""

    upstreams: Mapping[Backend, UpstreamSpec]
    base_domain: str
    platform_subdomains: frozenset[str]
    trusted_proxies: tuple[IPNetwork, ...]
    tenants: Mapping[str, TenantSpec]
    nginx: NginxSpec = field(default_factory=NginxSpec)
    shadow_limits: ShadowLimits = field(default_factory=ShadowLimits)
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)
    cutover: CutoverPolicy = field(default_factory=CutoverPolicy)
    # Whose orders v1's database holds (v1 is single-tenant): only these tenants' order reads may be
    # answered by v1, and only their notifications are copied to it, while they are on v2.
    v1_tenants: frozenset[str] = frozenset()
    source: str = "<memory>"
    digest: str = ""
    # host (lower case, no port) -> slug, for the explicit `hosts` entries only
    host_aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "upstreams", _frozen(self.upstreams))
        object.__setattr__(self, "tenants", _frozen(self.tenants))
        aliases = {host: t.slug for t in self.tenants.values() for host in t.hosts}
        object.__setattr__(self, "host_aliases", MappingProxyType(aliases))

    def summary(self) -> str:
        counts = {b: sum(1 for t in self.tenants.values() if t.backend == b) for b in BACKENDS}
        split = ", ".join(f"{n} on {b}" for b, n in counts.items())
        return f"{len(self.tenants)} tenant(s) ({split}), base domain {self.base_domain}"

    def rollout_policy(self, slug: str) -> RolloutPolicy:
        """The decision thresholds for one tenant: the file's, with the tenant's own soak window."""
        tenant = self.tenants.get(slug)
        if tenant is None or tenant.soak_s is None:
            return self.rollout
        return dataclasses.replace(self.rollout, soak_s=tenant.soak_s)

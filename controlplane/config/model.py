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
# Use with fullmatch: `$` also matches before a trailing newline, so "beta\n" would pass.
SLUG_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")

# Defaults of the tenant rule, for a routing file that omits them and for a server run without one
# (v2 with no --routing file): both servers resolve tenants alike.
DEFAULT_TRUSTED_PROXIES: Final[tuple[str, ...]] = ("127.0.0.1/32", "::1/128")
DEFAULT_PLATFORM_SUBDOMAINS: Final[frozenset[str]] = frozenset()
DEFAULT_BASE_DOMAIN: Final = "agentbar.ai"  # a routing file always names its own; this is for no file


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """How the cutover preflight asks a backend whether it is up: GET `path` and expect `expect_status`,
    or, with `tcp`, only a TCP connect (the seed's SQLite v1 has no health route at all)."""

    path: str = "/health"  # a URL path, no query
    expect_status: int = 200
    tcp: bool = False  # path and expect_status unused

    def describe(self) -> str:
        return "TCP connect" if self.tcp else f"GET {self.path} -> {self.expect_status}"


@dataclass(frozen=True, slots=True)
class UpstreamSpec:
    """One backend the router forwards to, with its connection budget."""

    name: Backend
    url: str  # scheme://host[:port], no path, no trailing slash
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 30.0
    pool_size: int = 100
    health: HealthCheck = HealthCheck()


Via = Literal["router", "direct"]
# Where a tenant's Midtrans notifications go: both backends (the one serving the tenant answers
# Midtrans, the other applies them too, so each keeps the orders it holds current across a cutover
# and the way back), or the serving backend only.
WebhookDelivery = Literal["both", "primary"]
RouteClass = Literal["read", "write", "webhook", "admin"]
ROUTE_CLASSES: Final[tuple[RouteClass, ...]] = ("read", "write", "webhook", "admin")
# Differ on every answer (a fresh Snap session each time): the value is not compared, the presence is.
DEFAULT_SHADOW_IGNORE: Final = ("$.token", "$.paymentUrl")
# v2's addition to v1's create answer: neither value nor presence compared (v1 never has it).
DEFAULT_SHADOW_IGNORE_ENTIRELY: Final = ("$.redirectUrl",)
# Fields that carry an order's state: a difference there is never learned as noise, however often
# two reads of the primary disagree (an order paid between the reads is a race, not noise).
DEFAULT_STATE_FIELDS: Final = ("$.order.status", "$.order.totalAmount", "$.success")


@dataclass(frozen=True, slots=True)
class ShadowSpec:
    """Mirroring of one tenant's requests to the other backend, and how answers are compared."""

    sample_rate: float = 1.0
    # Admin is never mirrored; writes and webhooks only when the shadow is v2 (which runs them dry).
    routes: frozenset[RouteClass] = frozenset({"read", "write", "webhook"})
    max_body_bytes: int = 64 * 1024
    ignore: frozenset[str] = frozenset(DEFAULT_SHADOW_IGNORE)  # value not compared; presence is
    ignore_entirely: frozenset[str] = frozenset(DEFAULT_SHADOW_IGNORE_ENTIRELY)  # neither value nor presence
    state_fields: frozenset[str] = frozenset(DEFAULT_STATE_FIELDS)  # never noise
    case_insensitive: frozenset[str] = frozenset()
    numeric_tolerance: float = 0.0
    ignore_extra_fields: bool = True
    noise_sample_rate: float = 0.05  # safe requests also sent twice to the primary, to learn noise
    # An order the primary has and the shadow answers 404 for is asked again after this delay (the
    # v1 -> v2 follow sync runs every 5 s): found then, it is `not_replicated`, not a mismatch.
    not_replicated_recheck_s: float = 6.0


@dataclass(frozen=True, slots=True)
class ShadowLimits:
    """Bounds on shadow work, per router worker and shadow backend: it may never slow the primary."""

    queue_size: int = 1000
    concurrency: int = 32
    timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one router worker grants its clients (the `limits:` section): a client that dribbles a
    request head, idles on a keep-alive connection, trickles a body or stops reading is cut off, and one
    tenant can hold only a share of a backend's connections, so a noisy or stuck tenant degrades alone."""

    header_timeout_s: float = 10.0  # from a request head's first byte to its end
    keepalive_timeout_s: float = 75.0  # an idle keep-alive connection (above nginx's 60 s upstream default)
    body_timeout_s: float = 10.0  # the longest wait for the next piece of a body, either way
    max_connections: int = 8192  # open client connections per worker; past it a connection gets 503
    tenant_pool_share: float = 0.5  # of an upstream's pool_size, held (or waited for) by one tenant

    def tenant_slots(self, pool_size: int) -> int:
        return max(1, int(pool_size * self.tenant_pool_share))


# How a tenant's own site (everything on its host that is not an API path) is served:
# snippet: ops keep their own server block and include the generated API locations in it (no
#          generated server block for the tenant: nothing can shadow the site ops already run);
# static:  a generated server block serves a folder, single-page-app style (unknown paths get index.html);
# upstream: a generated server block proxies the site to a server of its own (no tenant header).
SiteMode = Literal["snippet", "static", "upstream"]
SITE_MODES: Final[tuple[SiteMode, ...]] = ("snippet", "static", "upstream")


@dataclass(frozen=True, slots=True)
class SiteSpec:
    """Where a tenant's funnel site lives, and the path `nginx apply` checks still answers after a reload."""

    mode: SiteMode = "snippet"
    root: str | None = None  # static: an absolute folder; `{slug}` stands for the tenant's slug
    url: str | None = None  # upstream: scheme://host[:port]
    probe: str = "/"

    def root_of(self, slug: str) -> str | None:
        return None if self.root is None else self.root.replace("{slug}", slug)


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
    site: SiteSpec | None = None  # None: the routing file's nginx.site


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
    # No longer opened by the cutover (the write hold replaced it); still accepted so files that set it load.
    grace_minutes: float = 30.0
    router_wait_s: float = 30.0  # how long the routers may take to serve the new backend
    reverse_sync_lag_s: float = 60.0  # v2 unreachable: how far behind the reverse sync may have been to go back
    # How long the routers may hold the tenant's writes while the final sync and the flip run; past
    # it the cutover aborts, and each router releases a hold on its own at this age.
    hold_s: float = 2.0


# The paths the payment service answers (v1 and v2): the only ones nginx sends to it. A path ending
# in '/' is everything under it; any other is that path exactly.
DEFAULT_API_PATHS: Final = ("/payment/create", "/orders/", "/webhooks/midtrans", "/health", "/health/", "/admin/",
                            "/openapi.json")


@dataclass(frozen=True, slots=True)
class NginxSpec:
    """What the generated nginx includes need beyond the routing itself."""

    router_url: str = "http://127.0.0.1:8080"
    listen_ports: tuple[int, ...] = (80,)
    tls: TlsSpec | None = None
    access_log: str = "/var/log/nginx/dualstack.access.log"
    default_server: bool = True  # answer unknown hosts here (off if the host has its own default)
    keepalive: int = 32
    api_paths: tuple[str, ...] = DEFAULT_API_PATHS
    site: SiteSpec = field(default_factory=SiteSpec)  # every tenant's, unless it declares its own


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
    limits: ServerLimits = field(default_factory=ServerLimits)
    # Whose orders v1's database holds (v1 is single-tenant): only these tenants may be served by v1,
    # have their order reads answered by it, or their notifications copied to it. Declared as
    # `upstreams.v1.tenants`, which a file with any tenant on v1 must have; without it, none.
    v1_tenants: frozenset[str] = frozenset()
    v1_tenants_declared: bool = False
    source: str = "<memory>"
    digest: str = ""
    # host (lower case, no port) -> slug, for the explicit `hosts` entries only
    host_aliases: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "upstreams", _frozen(self.upstreams))
        object.__setattr__(self, "tenants", _frozen(self.tenants))
        aliases = {host: t.slug for t in self.tenants.values() for host in t.hosts}
        object.__setattr__(self, "host_aliases", MappingProxyType(aliases))

    def __reduce__(self) -> tuple[type[RoutingConfig], tuple[object, ...]]:
        """Pickled as its fields, the read-only mappings as plain dicts (a mapping proxy cannot be
        pickled): the router's supervisor parses the file once and hands the workers this snapshot."""
        values = [getattr(self, f.name) for f in dataclasses.fields(self)]
        return type(self), tuple(dict(v) if isinstance(v, MappingProxyType) else v for v in values)

    def summary(self) -> str:
        counts = {b: sum(1 for t in self.tenants.values() if t.backend == b) for b in BACKENDS}
        split = ", ".join(f"{n} on {b}" for b, n in counts.items())
        return f"{len(self.tenants)} tenant(s) ({split}), base domain {self.base_domain}"

    def v1_refusal(self, slug: str) -> str | None:
        """Why nothing may move `slug` to v1 (a rollback, a cutover back, a lock), or None when it may.
        v1 is single-tenant: sent a tenant whose orders it does not hold, it would answer that tenant's
        host with its own tenant's customers and take its payments with the wrong merchant key. So
        only a tenant named in `upstreams.v1.tenants` may be moved there."""
        if not self.v1_tenants_declared:
            return (f"this routing file does not say whose orders v1 holds (upstreams.v1.tenants), so nothing may "
                    f"move {slug} to v1: v1 is single-tenant and would serve {slug}'s customers another tenant's "
                    "orders. Declare it")
        if slug in self.v1_tenants:
            return None
        held = ", ".join(sorted(self.v1_tenants)) or "none"
        return (f"v1 does not hold {slug}'s orders (upstreams.v1.tenants: {held}): v1 is single-tenant, so it "
                f"would serve {slug}'s customers another tenant's orders")

    def rollout_policy(self, slug: str) -> RolloutPolicy:
        """The decision thresholds for one tenant: the file's, with the tenant's own soak window."""
        tenant = self.tenants.get(slug)
        if tenant is None or tenant.soak_s is None:
            return self.rollout
        return dataclasses.replace(self.rollout, soak_s=tenant.soak_s)

    def site_of(self, slug: str) -> SiteSpec:
        """Where one tenant's site lives: its own `site`, else the nginx section's (snippet by default)."""
        tenant = self.tenants[slug]
        return tenant.site if tenant.site is not None else self.nginx.site

"""Pure routing: which backend serves a tenant, for one config snapshot. No aiohttp import."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from controlplane.config.locks import Lock, effective_backend
from controlplane.config.model import Backend, RoutingConfig, ShadowSpec, UpstreamSpec
from proxy.tenant import TenantRule


@dataclass(frozen=True, slots=True)
class Route:
    tenant: str
    backend: Backend
    upstream: UpstreamSpec
    shadow: ShadowSpec | None = None
    shadow_backend: Backend | None = None  # the other backend, when mirrored
    shadow_upstream: UpstreamSpec | None = None
    declared_backend: Backend | None = None  # what the routing file says, when a lock overrides it
    override_reason: str | None = None
    # The other backend, when it holds this tenant's orders (v2 always; v1 for `upstreams.v1.tenants`):
    # asked for an order the serving one does not know (a cutover leaves orders on both), and sent
    # the tenant's Midtrans notifications too when `webhooks_to_both`.
    other_backend: Backend = "v2"
    other_upstream: UpstreamSpec | None = None
    webhooks_to_both: bool = True


class RoutingTable:
    """Everything a request needs from one config snapshot: the tenant rule and the routes.

    Built once per successful reload and then only read, so a request that took a reference to a
    table is routed entirely by that one snapshot even if a reload swaps the table meanwhile.
    """

    __slots__ = ("config", "generation", "locks", "routes", "rule")

    def __init__(self, config: RoutingConfig, generation: int,
                 locks: Mapping[str, Lock] = MappingProxyType({})) -> None:
        self.config = config
        self.generation = generation
        self.locks = locks
        self.rule = TenantRule.from_config(config)
        self.routes: dict[str, Route] = {}
        for slug, tenant in config.tenants.items():
            backend, reason = effective_backend(tenant.backend, locks.get(slug))
            other: Backend = "v2" if backend == "v1" else "v1"
            mirrored = tenant.shadow is not None
            self.routes[slug] = Route(slug, backend, config.upstreams[backend], tenant.shadow,
                                      other if mirrored else None, config.upstreams[other] if mirrored else None,
                                      tenant.backend if reason else None, reason, other,
                                      config.upstreams[other] if other == "v2" or slug in config.v1_tenants
                                      else None, tenant.webhooks == "both")

    def with_locks(self, locks: Mapping[str, Lock]) -> RoutingTable:
        return RoutingTable(self.config, self.generation, locks)

    def route_for(self, tenant: str) -> Route | None:
        return self.routes.get(tenant)

    def describe(self) -> dict[str, object]:
        """A JSON-ready view of the effective routing (no secrets live in the routing file)."""
        return {
            "generation": self.generation,
            "source": self.config.source,
            "digest": self.config.digest,
            "base_domain": self.config.base_domain,
            "platform_subdomains": sorted(self.config.platform_subdomains),
            "trusted_proxies": [str(n) for n in self.config.trusted_proxies],
            "upstreams": {
                name: {
                    "url": spec.url,
                    "connect_timeout_s": spec.connect_timeout_s,
                    "read_timeout_s": spec.read_timeout_s,
                    "pool_size": spec.pool_size,
                }
                for name, spec in self.config.upstreams.items()
            },
            "tenants": {
                slug: {
                    "backend": route.backend,
                    "declared_backend": route.declared_backend or route.backend,
                    "override": route.override_reason,
                    "upstream": route.upstream.url,
                    "hosts": [f"{slug}.{self.config.base_domain}", *self.config.tenants[slug].hosts],
                }
                for slug, route in sorted(self.routes.items())
            },
        }

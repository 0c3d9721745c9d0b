"""Pure routing: which backend serves a tenant, for one config snapshot. No aiohttp import."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from controlplane.config.locks import Lock, effective_backend, lock_refusal
from controlplane.config.model import Backend, RoutingConfig, ShadowSpec, UpstreamSpec
from controlplane.config.tenant import TenantRule


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

    __slots__ = ("config", "generation", "locks", "refused_locks", "routes", "rule", "shadowed", "tenants_on")

    def __init__(self, config: RoutingConfig, generation: int,
                 locks: Mapping[str, Lock] = MappingProxyType({})) -> None:
        self.config = config
        self.generation = generation
        self.locks = locks
        self.rule = TenantRule.from_config(config)
        self.routes: dict[str, Route] = {}
        # Locks this router will not apply, with why: a lock sending a tenant to v1 when v1 does not
        # hold its orders would serve its customers another tenant's (whoever wrote the lock).
        self.refused_locks: dict[str, str] = {}
        for slug in config.tenants:
            self._route(slug)
        # How many tenants each backend serves: a tenant alone on one may use its whole pool.
        self.tenants_on: dict[Backend, int] = {name: 0 for name in config.upstreams}
        for route in self.routes.values():
            self.tenants_on[route.backend] = self.tenants_on.get(route.backend, 0) + 1
        self.shadowed = frozenset(slug for slug, route in self.routes.items() if route.shadow is not None)

    def _route(self, slug: str) -> None:
        """Work out one tenant's route (and refused lock) from `config` and `locks`."""
        config, tenant = self.config, self.config.tenants[slug]
        lock = self.locks.get(slug)
        self.refused_locks.pop(slug, None)
        if (refusal := lock_refusal(config, slug, lock)) is not None:
            self.refused_locks[slug] = refusal
            lock = None
        backend, reason = effective_backend(tenant.backend, lock)
        other: Backend = "v2" if backend == "v1" else "v1"
        mirrored = tenant.shadow is not None
        self.routes[slug] = Route(slug, backend, config.upstreams[backend], tenant.shadow,
                                  other if mirrored else None, config.upstreams[other] if mirrored else None,
                                  tenant.backend if reason else None, reason, other,
                                  config.upstreams[other] if other == "v2" or slug in config.v1_tenants
                                  else None, tenant.webhooks == "both")

    def with_tenants(self, config: RoutingConfig, generation: int, slugs: Collection[str]) -> RoutingTable:
        """The table for `config`, which differs from this table's config in the tenants `slugs` only
        (controlplane/config/delta.py; the caller vouches for it): only their routes are worked out
        again, the rest are shared. At 10,000 tenants this is what keeps a reload off the CPU."""
        table = RoutingTable.__new__(RoutingTable)
        table.config, table.generation, table.locks = config, generation, self.locks
        table.rule = TenantRule.from_config(config)
        table.routes, table.refused_locks = dict(self.routes), dict(self.refused_locks)
        table.tenants_on = dict(self.tenants_on)
        shadowed = set(self.shadowed)
        for slug in slugs:
            # A changed route keeps its place (the order of the file), as a full build would give it.
            old = table.routes.get(slug) if slug in config.tenants else table.routes.pop(slug, None)
            if old is not None:
                table.tenants_on[old.backend] -= 1
            table.refused_locks.pop(slug, None)
            shadowed.discard(slug)
            if slug in config.tenants:
                table._route(slug)
                route = table.routes[slug]
                table.tenants_on[route.backend] = table.tenants_on.get(route.backend, 0) + 1
                if route.shadow is not None:
                    shadowed.add(slug)
        table.shadowed = frozenset(shadowed)
        return table

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
                    "refused_lock": self.refused_locks.get(slug),
                    "upstream": route.upstream.url,
                    # an explicit `hosts` entry may repeat the platform host: list each once
                    "hosts": list(dict.fromkeys([f"{slug}.{self.config.base_domain}",
                                                 *self.config.tenants[slug].hosts])),
                }
                for slug, route in sorted(self.routes.items())
            },
        }

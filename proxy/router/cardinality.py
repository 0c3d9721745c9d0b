"""Which tenants get per-tenant metric detail, so a router with 10,000 tenants exports a bounded scrape.

Detail (a latency histogram labelled with the tenant, zero-initialised request counters, the
backend gauge) is for the *watched* tenants, whose evidence someone reads per tenant: those in a
rollout (the decider judges them), those shadowed (their comparisons are read per tenant anyway),
and those moved to the other backend since the router started (a flip begins a rollout; a rollback
lock ends one). Every other tenant's latency is observed under the bounded tenant label
OTHER_TENANTS: the decider's v1 baseline sums over every tenant but `unknown`, so it still finds it,
and nobody reads a per-tenant p99 of a tenant nobody rolls out. Request counters keep the tenant
label for everyone (the error-budget alerts are per tenant) but are created only by traffic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from controlplane.state.rollouts import Phase

# Not a tenant slug (a slug is a DNS label: no underscore), so it never collides with a tenant.
OTHER_TENANTS: Final = "_other"
# Phases in which the decider reads a tenant's own series; promoted and rolled back are finished.
IN_ROLLOUT: Final = frozenset({Phase.SOAKING, Phase.HELD})


@dataclass(frozen=True, slots=True)
class Detail:
    """The watched tenants: in a rollout, shadowed, or moved. Immutable: `with_*` copies."""

    rolling: frozenset[str] = frozenset()
    shadowed: frozenset[str] = frozenset()
    moved: frozenset[str] = frozenset()
    tenants: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tenants", self.rolling | self.shadowed | self.moved)

    def with_rolling(self, phases: Mapping[str, Phase]) -> Detail:
        rolling = frozenset(t for t, phase in phases.items() if phase in IN_ROLLOUT)
        return Detail(rolling, self.shadowed, self.moved)

    def with_shadowed(self, tenants: Iterable[str]) -> Detail:
        return Detail(self.rolling, frozenset(tenants), self.moved)

    def with_moved(self, moved: Iterable[str], gone: Iterable[str]) -> Detail:
        """Moved since the router started: kept from then on (a rollback and its ack both show),
        until the tenant leaves the routing file."""
        return Detail(self.rolling, self.shadowed, (self.moved | frozenset(moved)) - frozenset(gone))

    def label(self, tenant: str) -> str:
        """The tenant label of a latency observation."""
        return tenant if tenant in self.tenants else OTHER_TENANTS

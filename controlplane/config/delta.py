"""A change to the routing file that touched tenant entries only, as a small value.

At 10,000 tenants a full snapshot is hundreds of KB to pickle and tens of milliseconds of CPU for
each router worker to take in; a reload that flips one tenant needs one TenantSpec. Whoever knows
both snapshots (the router's supervisor) works out the delta; whoever holds the old one (a worker)
patches it. Anything but tenants changed, and there is no delta: the full snapshot is the answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from controlplane.config.model import RoutingConfig, TenantSpec

# Every field a delta leaves as it was: compared by the supervisor, never shipped. `tenants` and the
# fields derived from the file's bytes or from the tenants are the delta's business. A field added to
# RoutingConfig is compared too unless named here, so a new section never slips through a delta.
_DERIVED_OR_TENANTS = frozenset({"tenants", "digest", "host_aliases"})
_KEPT = tuple(f.name for f in dataclasses.fields(RoutingConfig) if f.name not in _DERIVED_OR_TENANTS)


@dataclass(frozen=True, slots=True)
class TenantDelta:
    """From one snapshot to the next: tenants new or changed (their whole spec), tenants removed."""

    changed: Mapping[str, TenantSpec]
    removed: frozenset[str]
    digest: str  # the new file's

    def slugs(self) -> frozenset[str]:
        """Every tenant whose route may differ after the delta."""
        return frozenset(self.changed) | self.removed

    def applied_to(self, config: RoutingConfig) -> RoutingConfig:
        """`config` with these tenants replaced (the order of the file kept for the others; a new
        tenant comes last). Derived fields (host aliases) are worked out again by the model."""
        tenants = {slug: self.changed.get(slug, spec) for slug, spec in config.tenants.items()
                   if slug not in self.removed}
        tenants.update((slug, spec) for slug, spec in self.changed.items() if slug not in tenants)
        return dataclasses.replace(config, tenants=tenants, digest=self.digest)


def tenant_delta(old: RoutingConfig, new: RoutingConfig) -> TenantDelta | None:
    """The delta from `old` to `new`, or None when anything but tenants changed (or the delta would
    not give `new` back exactly, tenant order included): then the full snapshot must be handed out."""
    if any(getattr(old, name) != getattr(new, name) for name in _KEPT):
        return None
    changed = {slug: spec for slug, spec in new.tenants.items() if old.tenants.get(slug) != spec}
    removed = frozenset(old.tenants.keys() - new.tenants.keys())
    delta = TenantDelta(changed, removed, new.digest)
    patched = delta.applied_to(old)
    # A new tenant written between others would land last in the patched snapshot: no delta then.
    if list(patched.tenants.items()) != list(new.tenants.items()) or patched.host_aliases != new.host_aliases:
        return None
    return delta

"""What `dualstack status` gathered: the routing file, the state database, each router's /routes and
Prometheus' firing alerts, each as it was read (or why it could not be). Plain values: the view is
built from them by a pure function (view.py), so it is tested without any I/O."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from controlplane.config.locks import Lock
from controlplane.config.model import RoutingConfig
from controlplane.shadow.matchrate import MatchRate
from controlplane.state.reverse_syncs import ReverseSyncRecord
from controlplane.state.rollouts import FleetRollout


class SourceKind(enum.StrEnum):
    ROUTING_FILE = "routing_file"
    STATE_DATABASE = "state_database"
    ROUTER = "router"
    PROMETHEUS = "prometheus"


@dataclass(frozen=True, slots=True)
class Source:
    """One place status reads from, and how that went. `ok` None: not asked (no address given)."""

    kind: SourceKind
    where: str  # never a secret: a database by host and name, a URL without its user info
    ok: bool | None
    detail: str


@dataclass(frozen=True, slots=True)
class RouterTenant:
    """One tenant in a router's /routes."""

    backend: str
    refused_lock: str | None = None


@dataclass(frozen=True, slots=True)
class RouterRoutes:
    """A router's /routes: the routing it serves, and which version of the routing file it runs."""

    url: str
    generation: int
    digest: str
    tenants: Mapping[str, RouterTenant]


@dataclass(frozen=True, slots=True)
class StateReadings:
    """The state database, one query per table."""

    locks: Mapping[str, Lock]
    rollouts: Mapping[str, FleetRollout]
    shadow: Mapping[str, MatchRate]  # over the cutover's shadow window
    reverse_syncs: Mapping[str, ReverseSyncRecord] = field(default_factory=dict)  # running or completed


@dataclass(frozen=True, slots=True)
class Alert:
    """A firing Prometheus alert; `tenant` None: about the fleet or a router, not one tenant."""

    name: str
    severity: str
    tenant: str | None
    summary: str
    active_at: str


@dataclass(frozen=True, slots=True)
class Gathered:
    now: datetime
    config: RoutingConfig | None  # None: the routing file could not be read (its Source says why)
    state: StateReadings | None
    routers: Sequence[RouterRoutes]
    alerts: Sequence[Alert]
    sources: Sequence[Source] = field(default_factory=tuple)

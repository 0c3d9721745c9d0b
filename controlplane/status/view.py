"""The fleet view of `dualstack status`: one row per tenant, what needs attention first. Pure: built
from what was gathered (readings.py), no I/O.

A tenant's effective backend is what the routers serve (their /routes); with no router read, what the
routing file and the rollback locks say they serve. Why it differs from the declared one, and what
else needs looking at, are the row's reasons. Rows sort by attention, then by slug:

    refused_lock  a rollback lock the routers will not apply (v1 does not hold the tenant's orders)
    alert         a firing Prometheus alert names the tenant
    rollback      pinned to v1 by a rollback lock, or rolled back and not yet soaking again
    held          held by ops, or the decider's newest decision is a hold
    mismatch      a router serves another backend than the file and the locks say (an older version
                  of the routing file, a lock not applied yet), or does not route the tenant at all
    soaking       on v2, its soak window running
    steady        nothing to do
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from controlplane.config.locks import Lock, effective_backend, lock_refusal
from controlplane.config.model import CutoverPolicy, RolloutPolicy, RoutingConfig
from controlplane.shadow.matchrate import MatchRate
from controlplane.state.rollouts import FleetRollout, Phase
from controlplane.status.readings import Alert, Gathered, RouterRoutes, Source


class Attention(enum.StrEnum):
    """What a tenant needs, most urgent first (the order of the members is the sort order)."""

    REFUSED_LOCK = "refused_lock"
    ALERT = "alert"
    ROLLBACK = "rollback"
    HELD = "held"
    MISMATCH = "mismatch"
    SOAKING = "soaking"
    STEADY = "steady"

    @property
    def rank(self) -> int:
        return list(Attention).index(self)


@dataclass(frozen=True, slots=True)
class Soak:
    started_at: datetime
    window_s: float
    progress: float  # 0..1 of the window
    decision_due_at: datetime | None  # the window's end; None while held (nothing is decided)
    remaining_s: float | None


@dataclass(frozen=True, slots=True)
class LastDecision:
    at: datetime
    action: str
    verdict: str
    dry_run: bool
    reason: str


@dataclass(frozen=True, slots=True)
class TenantRow:
    tenant: str
    attention: Attention
    declared: str | None  # None: not in the routing file (or the file could not be read)
    effective: str | None  # v1, v2, mixed (routers disagree), or None: nothing says
    effective_from: str  # routers | state (file and locks) | file (no state database read)
    reasons: tuple[str, ...]
    phase: str | None
    soak: Soak | None
    last_decision: LastDecision | None
    shadow: MatchRate | None
    lock: Lock | None
    lock_refused: str | None
    alerts: tuple[Alert, ...]
    reverse_sync: ReverseSyncShown | None = None  # only while running


@dataclass(frozen=True, slots=True)
class ReverseSyncShown:
    """A running reverse sync (v2 -> v1's store): how far v1 is behind, as the state database says."""

    caught_up_to: datetime | None  # None: no pass has finished yet
    lag_s: float | None  # now minus caught_up_to
    last_pass_at: datetime | None
    rows_copied: int
    last_error: str | None

    def reason(self) -> str:
        if self.caught_up_to is None or self.lag_s is None:
            text = "reverse sync running: no pass finished yet (v1 may lack v2's orders)"
        else:
            text = (f"reverse sync running: v1 holds v2's changes up to {self.caught_up_to:%H:%M:%S} UTC "
                    f"(lag {self.lag_s:.0f} s, {self.rows_copied} rows copied)")
        return text + (f"; last pass failed: {self.last_error[:120]}" if self.last_error else "")


@dataclass(frozen=True, slots=True)
class FleetView:
    generated_at: datetime
    tenants: tuple[TenantRow, ...]
    sources: tuple[Source, ...]
    fleet_alerts: tuple[Alert, ...]  # firing alerts that name no tenant
    shadow_window_s: float

    @property
    def complete(self) -> bool:
        """Every source that was asked answered."""
        return all(source.ok is not False for source in self.sources)

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(row.attention for row in self.tenants)
        return {str(attention): found[attention] for attention in Attention}


def build_view(gathered: Gathered) -> FleetView:
    config = gathered.config
    slugs = set(config.tenants if config else ())
    for router in gathered.routers:
        slugs.update(router.tenants)
    alerts: dict[str, list[Alert]] = {}
    for alert in gathered.alerts:
        if alert.tenant is not None:
            alerts.setdefault(alert.tenant, []).append(alert)
    rows = [_row(slug, gathered, tuple(alerts.get(slug, ()))) for slug in slugs]
    rows.sort(key=lambda row: (row.attention.rank, row.tenant))
    window = (config.cutover if config else CutoverPolicy()).shadow_window_s
    fleet = tuple(a for a in gathered.alerts if a.tenant is None or a.tenant not in slugs)
    return FleetView(gathered.now, tuple(rows), tuple(gathered.sources), fleet, window)


def _row(slug: str, g: Gathered, alerts: tuple[Alert, ...]) -> TenantRow:
    config, state = g.config, g.state
    spec = config.tenants.get(slug) if config else None
    declared = spec.backend if spec else None
    lock = state.locks.get(slug) if state else None
    refused = lock_refusal(config, slug, lock) if config and spec else None
    refused = refused or next((t.refused_lock for r in g.routers if (t := r.tenants.get(slug)) and t.refused_lock),
                              None)
    expected, lock_reason = (effective_backend(declared, None if refused else lock) if declared
                             else (None, None))
    served = {r.url: (t.backend if (t := r.tenants.get(slug)) else None) for r in g.routers}
    backends = {b for b in served.values() if b is not None}
    effective: str | None
    if backends:
        effective, effective_from = (min(backends) if len(backends) == 1 else "mixed"), "routers"
    else:
        effective, effective_from = expected, "state" if state else "file"

    reasons: list[str] = []
    if refused:
        reasons.append(f"lock refused: {refused}")
    if lock_reason:
        reasons.append(lock_reason)
    unknown = declared is None and config is not None
    if unknown:
        routing = sorted(url for url, backend in served.items() if backend)
        reasons.append("not in the routing file" + (f"; still routed by {', '.join(routing)}" if routing else ""))
    disagree = _router_disagreements(g.routers, served, expected, config) if declared else []
    reasons += disagree

    rollout = state.rollouts.get(slug) if state else None
    phase = rollout.phase if rollout and declared == "v2" else None
    policy = config.rollout_policy(slug) if config else RolloutPolicy()
    soak = _soak(rollout, policy, g.now) if phase in (Phase.SOAKING, Phase.HELD) and not lock_reason else None
    decision = _last_decision(rollout)
    if phase is Phase.HELD:
        reasons.append("held by ops: no automatic action (`dualstack rollout resume`)")
    elif decision and decision.action == "hold" and phase is Phase.SOAKING:
        reasons.append(f"decider holds: {decision.reason}")
    reasons += [f"alert {a.name}: {a.summary}" if a.summary else f"alert {a.name}" for a in alerts]
    record = state.reverse_syncs.get(slug) if state else None
    reverse = None if record is None or not record.running else ReverseSyncShown(
        record.watermark, record.lag_at(g.now), record.last_pass_at, record.rows_copied, record.last_error)
    if reverse is not None:
        reasons.append(reverse.reason())

    if refused:
        attention = Attention.REFUSED_LOCK
    elif alerts:
        attention = Attention.ALERT
    elif lock_reason or (phase is Phase.ROLLED_BACK):
        attention = Attention.ROLLBACK
    elif phase is Phase.HELD or (decision and decision.action == "hold" and phase is Phase.SOAKING):
        attention = Attention.HELD
    elif disagree or unknown:
        attention = Attention.MISMATCH
    elif phase is Phase.SOAKING:
        attention = Attention.SOAKING
    else:
        attention = Attention.STEADY
    return TenantRow(slug, attention, declared, effective, effective_from, tuple(reasons),
                     str(phase) if phase else None, soak, decision, state.shadow.get(slug) if state else None,
                     lock, refused, alerts, reverse)


def _router_disagreements(routers: Sequence[RouterRoutes], served: dict[str, str | None], expected: str | None,
                          config: RoutingConfig | None) -> list[str]:
    out = []
    for router in routers:
        backend = served[router.url]
        if backend == expected:
            continue
        older = config is not None and router.digest != config.digest
        why = (f"it runs another version of the routing file (generation {router.generation})" if older
               else "a lock change not applied yet")
        out.append(f"{router.url} does not route this tenant: {why}" if backend is None
                   else f"{router.url} serves {backend}, not {expected}: {why}")
    return out


def _soak(rollout: FleetRollout | None, policy: RolloutPolicy, now: datetime) -> Soak | None:
    if rollout is None:
        return None
    window_s = policy.soak_s
    elapsed_s = max(0.0, (now - rollout.soak_started_at).total_seconds())
    progress = min(1.0, elapsed_s / window_s) if window_s > 0 else 1.0
    if rollout.phase is Phase.HELD:
        return Soak(rollout.soak_started_at, window_s, progress, None, None)
    due = rollout.soak_started_at + timedelta(seconds=window_s)
    return Soak(rollout.soak_started_at, window_s, progress, due, max(0.0, (due - now).total_seconds()))


def _last_decision(rollout: FleetRollout | None) -> LastDecision | None:
    record = rollout.last_decision if rollout else None
    if record is None:
        return None
    return LastDecision(record.at, record.action, record.verdict, record.dry_run,
                        record.reasons[0] if record.reasons else "")

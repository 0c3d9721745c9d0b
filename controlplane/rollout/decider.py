"""The decider: for every tenant declared on v2, keep its soak, decide from the evidence, act.

Only one decider acts at a time: each run holds the state database's leader lock
(controlplane/state/rollouts.py), and a second decider that cannot take it does nothing. Every
decision is recorded with its inputs whether or not it is acted on (`--dry-run` records and does
nothing). A rollback is a lock in the state database, which every router applies within seconds.
Rollbacks, promotions, holds and provider errors are notified (a hold once, when its reason changes),
and the routers export the last decision per action, which the alerting rules watch. A tenant v1
does not hold is never rolled back: the decision itself is a hold (decide.without_way_back), it
keeps soaking and being decided, and DualstackRolloutNoWayBack pages while it lasts. Each pass also
prunes the router's sightings of v1 orders older than the cutover preflight's window.

A pass reads every soaking tenant's evidence in one call to the source (a handful of queries, not a
dozen per tenant) and writes its records over one database connection: a thousand soaking tenants
take seconds.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

from controlplane.config.locks import effective_backend
from controlplane.config.model import RoutingConfig
from controlplane.rollout.calibration import Plan, plan_for
from controlplane.rollout.decide import (
    Action,
    Decision,
    Memory,
    Outcome,
    Policy,
    decide,
    provider_error,
    without_way_back,
)
from controlplane.rollout.evidence import Evidence
from controlplane.rollout.notify import notify
from controlplane.rollout.soak import Soak
from controlplane.rollout.sources import EvidenceSource, Read, SourceError
from controlplane.state import v1_orders_seen
from controlplane.state.rollouts import Phase, Rollout, RolloutStore


def advance(soak: Soak, source: EvidenceSource, tenant: str, soak_started_at: datetime, plan: Plan,
            at: datetime) -> Decision:
    """Fold what the source has seen since the soak's last slice, then decide (replay: one tenant)."""
    try:
        evidence = source.evidence_for([Read(tenant, soak_started_at, soak.read_until_s)], at)[tenant]
    except SourceError as exc:
        return provider_error(str(exc))
    return fold_and_decide(soak, evidence, plan, at)


def fold_and_decide(soak: Soak, evidence: Evidence, plan: Plan, at: datetime) -> Decision:
    if not soak.primed:
        soak.start(evidence.history)
    for s in evidence.slices:
        soak.fold(s)
    return decide(soak, plan, at.timestamp())


def _soak(rollout: Rollout, plan: Plan) -> Soak:
    saved = Soak.from_json(plan.specs, dict(rollout.memory.soak)) if rollout.memory.soak else None
    return saved or Soak(plan.specs, rollout.soak_started_at.timestamp())


def run_once(config: RoutingConfig, store: RolloutStore, source: EvidenceSource, policy: Policy | None,
             now: datetime, *, dry_run: bool = False, notify_url: str | None = None) -> list[tuple[str, str]]:
    """One pass over every tenant declared on v2; returns (tenant, what happened): a line, and a line
    more for each check that could not be evaluated (the evidence error).

    `policy` None: each tenant's thresholds come from the routing file (`rollout:`)."""
    report: list[tuple[str, str]] = []
    with store.leader() as leading, store.one_connection():
        if not leading:
            return [("*", "another decider is active; doing nothing")]
        rollouts, locks = store.rollouts(), store.locks.locks()
        soaking: list[tuple[int, Rollout, Plan, Soak]] = []  # (its line in the report, ...)
        for slug, spec in sorted(config.tenants.items()):
            if spec.backend != "v2":
                continue
            rollout = rollouts.get(slug)
            if effective_backend(spec.backend, locks.get(slug))[1] is not None:
                report.append((slug, "rolled back and pinned to v1: waiting for `dualstack rollout ack`"))
                continue
            if rollout is None or rollout.phase is Phase.ROLLED_BACK:
                if not dry_run:
                    store.save(slug, Phase.SOAKING, now, Memory())
                report.append((slug, "declared on v2: soak window started"))
                continue
            if rollout.phase is Phase.PROMOTED:
                continue
            if rollout.phase is Phase.HELD:
                report.append((slug, "held by ops: no automatic action (`dualstack rollout resume`)"))
                continue
            plan = plan_for(policy or config.rollout_policy(slug), config.cutover)
            soaking.append((len(report), rollout, plan, _soak(rollout, plan)))
            report.append((slug, ""))
        # Every soaking tenant's evidence in one reading: a handful of queries, not a dozen per tenant.
        reads = [Read(report[i][0], rollout.soak_started_at, soak.read_until_s) for i, rollout, _, soak in soaking]
        try:
            evidence, failure = source.evidence_for(reads, now), None
        except SourceError as exc:
            evidence, failure = {}, provider_error(str(exc))
        for i, rollout, plan, soak in soaking:
            slug = report[i][0]
            found = evidence.get(slug)
            decided = (fold_and_decide(soak, found, plan, now) if found is not None
                       else failure or provider_error("the source returned nothing for this tenant"))
            decision = without_way_back(decided, config.v1_refusal(slug))
            store.record(slug, decision, dry_run)
            # An evidence error goes on its own line: what failed and where (connection refused to URL).
            errors = "".join(f"\n{c.name}: {c.reason}" for c in decision.checks if c.outcome is Outcome.ERROR)
            report[i] = (slug, f"{decision.action}: {decision.reasons[0]}" + (" (dry run)" if dry_run else "")
                         + errors)
            if not dry_run:
                _act(store, config, slug, rollout, soak, decision, notify_url)
        if not dry_run:
            with psycopg.connect(store.database_url, autocommit=True) as conn:
                v1_orders_seen.prune(conn, store.schema)
    return report


def _act(store: RolloutStore, config: RoutingConfig, slug: str, rollout: Rollout, soak: Soak, decision: Decision,
         notify_url: str | None) -> None:
    started, reason = rollout.soak_started_at, decision.reasons[0]
    hold = str(decision.hold) if decision.hold is not None else None
    if decision.action is Action.HOLD and hold != soak.last_hold:
        notify(notify_url, f"dualstack: {slug} held on v2 - {reason}")
    soak.last_hold = hold
    memory = Memory(soak.to_json())
    if decision.action is Action.ROLLBACK:
        store.locks.rollback(config, slug, reason, "decider")  # v1 holds the tenant: without_way_back saw to it
        store.save(slug, Phase.ROLLED_BACK, started, memory)
        notify(notify_url, f"dualstack: {slug} rolled back to v1 - {reason}")
    elif decision.action is Action.PROMOTE:
        store.save(slug, Phase.PROMOTED, started, memory)
        notify(notify_url, f"dualstack: {slug} promoted on v2 - {reason}")
    else:
        store.save(slug, Phase.SOAKING, started, memory)
    return None

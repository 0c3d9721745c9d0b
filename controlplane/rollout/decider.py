"""The decider: for every tenant declared on v2, keep its soak, decide from the evidence, act.

Only one decider acts at a time: each run holds a PostgreSQL advisory lock on its own session,
and a second decider that cannot take it does nothing. Every decision is recorded with its inputs
whether or not it is acted on (`--dry-run` records and does nothing). A rollback is a lock in the
state database, which every router applies within seconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from controlplane.config.locks import effective_backend
from controlplane.config.model import RoutingConfig
from controlplane.rollout.decide import Action, Counts, Decision, Evidence, Memory, Policy, decide
from controlplane.rollout.locks import LockStore
from controlplane.rollout.notify import notify
from controlplane.rollout.sources import EvidenceSource, SourceError

_LEADER_KEY: Final = 0x64_73_64_65_63_69  # "dsdeci"
_NO_EVIDENCE: Final = Evidence(v2=Counts(0, 0), baseline=Counts(0, 0), v2_last_hour=Counts(0, 0),
                               v2_last_5m=Counts(0, 0))


def memory_to_json(memory: Memory) -> dict[str, Any]:
    return dataclasses.asdict(memory)


def memory_from_json(data: dict[str, Any]) -> Memory:
    if not data:
        return Memory()
    return Memory(data["error_cusum"], data["mismatch_cusum"], Counts(**data["seen_v2"]),
                  Counts(**data["seen_shadow"]))


def decision_to_json(decision: Decision) -> tuple[list[str], list[dict[str, Any]]]:
    checks = [{**dataclasses.asdict(c), "inputs": dict(c.inputs), "outcome": str(c.outcome)} for c in decision.checks]
    return list(decision.reasons), json.loads(json.dumps(checks, default=str))


@dataclass(frozen=True)
class Rollout:
    tenant: str
    phase: str
    soak_started_at: datetime
    memory: Memory


class RolloutStore:
    def __init__(self, database_url: str, schema: str) -> None:
        self.database_url = database_url
        self.schema = schema
        self.locks = LockStore(database_url, schema)

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=sql.Identifier(self.schema))

    @contextlib.contextmanager
    def leader(self) -> Iterator[bool]:
        """True while this process is the one decider allowed to act (released when the block ends)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LEADER_KEY,)).fetchone()
            acquired = bool(row and row[0])
            try:
                yield acquired
            finally:
                if acquired:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_LEADER_KEY,))

    def rollouts(self) -> dict[str, Rollout]:
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(self._q("SELECT tenant, phase, soak_started_at, memory FROM {s}.rollouts")).fetchall()
        return {r[0]: Rollout(r[0], r[1], r[2], memory_from_json(r[3])) for r in rows}

    def save(self, tenant: str, phase: str, soak_started_at: datetime, memory: Memory) -> None:
        with psycopg.connect(self.database_url) as conn:
            conn.execute(self._q(
                "INSERT INTO {s}.rollouts (tenant, phase, soak_started_at, memory) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (tenant) DO UPDATE SET phase = EXCLUDED.phase, "
                "soak_started_at = EXCLUDED.soak_started_at, memory = EXCLUDED.memory, updated_at = now()"),
                (tenant, phase, soak_started_at, Jsonb(memory_to_json(memory))))

    def record(self, tenant: str, decision: Decision, dry_run: bool) -> None:
        reasons, checks = decision_to_json(decision)
        with psycopg.connect(self.database_url) as conn:
            conn.execute(self._q("INSERT INTO {s}.rollout_decisions (tenant, action, verdict, dry_run, reasons, "
                                 "checks) VALUES (%s, %s, %s, %s, %s, %s)"),
                         (tenant, str(decision.action), str(decision.verdict), dry_run, Jsonb(reasons), Jsonb(checks)))

    def set_phase(self, tenant: str, phase: str, kind: str, who: str, reason: str) -> bool:
        """A manual change (promote, hold, resume), recorded as an event; False if no rollout exists."""
        with psycopg.connect(self.database_url) as conn, conn.transaction():
            result = conn.execute(self._q("UPDATE {s}.rollouts SET phase = %s, updated_at = now() WHERE tenant = %s"),
                                  (phase, tenant))
            if result.rowcount == 0:
                return False
            conn.execute(self._q("INSERT INTO {s}.rollout_events (tenant, kind, actor, detail) "
                                 "VALUES (%s, %s, %s, %s)"), (tenant, kind, who, Jsonb({"reason": reason})))
        return True

    def history(self, tenant: str, limit: int = 20) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        with psycopg.connect(self.database_url) as conn:
            decisions = conn.execute(self._q(
                "SELECT at, action, verdict, dry_run, reasons, checks FROM {s}.rollout_decisions WHERE tenant = %s "
                "ORDER BY at DESC, id DESC LIMIT %s"), (tenant, limit)).fetchall()
            events = conn.execute(self._q("SELECT at, kind, actor, detail FROM {s}.rollout_events WHERE tenant = %s "
                                          "ORDER BY at DESC, id DESC LIMIT %s"), (tenant, limit)).fetchall()
        return decisions, events


def run_once(config: RoutingConfig, store: RolloutStore, source: EvidenceSource, policy: Policy | None,
             now: datetime, *, dry_run: bool = False, notify_url: str | None = None) -> list[tuple[str, str]]:
    """One pass over every tenant declared on v2; returns (tenant, what happened) lines.

    `policy` None: each tenant's thresholds come from the routing file (`rollout:`)."""
    report: list[tuple[str, str]] = []
    with store.leader() as leading:
        if not leading:
            return [("*", "another decider is active; doing nothing")]
        rollouts, locks = store.rollouts(), store.locks.locks()
        for slug, spec in sorted(config.tenants.items()):
            if spec.backend != "v2":
                continue
            rollout = rollouts.get(slug)
            lock = locks.get(slug)
            if effective_backend(spec.backend, lock)[1] is not None:
                report.append((slug, "rolled back and pinned to v1: waiting for `dualstack rollout ack`"))
                continue
            if rollout is None or rollout.phase == "rolled_back":
                if not dry_run:
                    store.save(slug, "soaking", now, Memory())
                report.append((slug, "declared on v2: soak window started"))
                continue
            if rollout.phase == "promoted":
                continue
            if rollout.phase == "held":
                report.append((slug, "held by ops: no automatic action (`dualstack rollout resume`)"))
                continue
            soaked_s = (now - rollout.soak_started_at).total_seconds()
            try:
                evidence = source.evidence(slug, rollout.soak_started_at, now)
            except SourceError as exc:
                evidence = dataclasses.replace(_NO_EVIDENCE, provider_error=str(exc))
            decision, memory = decide(evidence, policy or config.rollout_policy(slug), soaked_s, rollout.memory)
            store.record(slug, decision, dry_run)
            report.append((slug, f"{decision.action}: {decision.reasons[0]}" + (" (dry run)" if dry_run else "")))
            if dry_run:
                continue
            if decision.action is Action.ROLLBACK:
                store.locks.rollback(config, slug, decision.reasons[0], "decider")
                store.save(slug, "rolled_back", rollout.soak_started_at, memory)
                notify(notify_url, f"dualstack: {slug} rolled back to v1 - {decision.reasons[0]}")
            elif decision.action is Action.PROMOTE:
                store.save(slug, "promoted", rollout.soak_started_at, memory)
                notify(notify_url, f"dualstack: {slug} promoted on v2 - {decision.reasons[0]}")
            elif evidence.provider_error is None:
                store.save(slug, "soaking", rollout.soak_started_at, memory)
    return report


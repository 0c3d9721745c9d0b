"""Rollouts: each tenant's move to v2 (its phase, its soak window, the decision engine's memory) and
every decision with its inputs. The only place `rollouts` and `rollout_decisions` SQL lives: the
control plane runs it here (sync psycopg); the router runs SELECT_ROLLOUT_VIEWS with its async
connection and maps the rows with `rollout_views_from_rows`.

Only one decider acts at a time: `leader` holds a PostgreSQL advisory lock on its own session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple

import psycopg
from psycopg.types.json import Jsonb

from controlplane.rollout.decide import Decision, Memory
from controlplane.state.events import Event, EventKind, recent_events, record_event
from controlplane.state.locks import LockStore
from controlplane.state.schema import query


class Phase(enum.StrEnum):
    """Where a tenant's move to v2 is; the values are the `phase` column's (its CHECK constraint)."""

    SOAKING = "soaking"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    HELD = "held"  # by ops: the decider records evidence and takes no action


@dataclass(frozen=True)
class Rollout:
    tenant: str
    phase: Phase
    soak_started_at: datetime
    memory: Memory


@dataclass(frozen=True, slots=True)
class RolloutView:
    """What the routers export about a rollout (dualstack_rollout_* metrics)."""

    phase: Phase
    soak_started_s: float
    last_action: str | None
    last_decision_s: float | None
    last_verdict: str | None = None  # with a hold: no_go when v2 fails and cannot be rolled back


class DecisionRecord(NamedTuple):
    at: datetime
    action: str
    verdict: str
    dry_run: bool
    reasons: list[str]
    checks: list[dict[str, Any]]


_LEADER_KEY: Final = 0x64_73_64_65_63_69  # "dsdeci"
_SELECT: Final = "SELECT tenant, phase, soak_started_at, memory FROM {s}.rollouts"
_SAVE: Final = ("INSERT INTO {s}.rollouts (tenant, phase, soak_started_at, memory) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (tenant) DO UPDATE SET phase = EXCLUDED.phase, "
                "soak_started_at = EXCLUDED.soak_started_at, memory = EXCLUDED.memory, updated_at = now()")
_SET_PHASE: Final = "UPDATE {s}.rollouts SET phase = %s, updated_at = now() WHERE tenant = %s"
_RECORD: Final = ("INSERT INTO {s}.rollout_decisions (tenant, action, verdict, dry_run, reasons, checks) "
                  "VALUES (%s, %s, %s, %s, %s, %s)")
_DECISIONS: Final = ("SELECT at, action, verdict, dry_run, reasons, checks FROM {s}.rollout_decisions "
                     "WHERE tenant = %s ORDER BY at DESC, id DESC LIMIT %s")
SELECT_ROLLOUT_VIEWS: Final = (
    "SELECT r.tenant, r.phase, extract(epoch FROM r.soak_started_at), d.action, extract(epoch FROM d.at), d.verdict "
    "FROM {s}.rollouts r LEFT JOIN LATERAL (SELECT action, at, verdict FROM {s}.rollout_decisions "
    "WHERE tenant = r.tenant AND NOT dry_run ORDER BY at DESC LIMIT 1) d ON true")

# Every rollout with its newest decision (dry runs included, and flagged): one query for the fleet
# (`dualstack status`), each decision found through the (tenant, at DESC) index.
_FLEET: Final = (
    "SELECT r.tenant, r.phase, r.soak_started_at, d.at, d.action, d.verdict, d.dry_run, d.reasons "
    "FROM {s}.rollouts r LEFT JOIN LATERAL (SELECT at, action, verdict, dry_run, reasons FROM {s}.rollout_decisions "
    "WHERE tenant = r.tenant ORDER BY at DESC, id DESC LIMIT 1) d ON true")


class FleetRollout(NamedTuple):
    """A tenant's rollout as `dualstack status` shows it: its phase, soak start and newest decision."""

    phase: Phase
    soak_started_at: datetime
    last_decision: DecisionRecord | None  # its `checks` are left out (empty)


def fleet_rollouts(conn: psycopg.Connection[Any], schema: str) -> dict[str, FleetRollout]:
    rows = conn.execute(query(_FLEET, schema)).fetchall()
    return {tenant: FleetRollout(Phase(phase), started, None if at is None else
                                 DecisionRecord(at, action, verdict, dry, list(reasons), []))
            for tenant, phase, started, at, action, verdict, dry, reasons in rows}


def rollout_views_from_rows(rows: Iterable[Sequence[Any]]) -> dict[str, RolloutView]:
    return {row[0]: RolloutView(Phase(row[1]), float(row[2]), row[3], float(row[4]) if row[4] is not None else None,
                                row[5]) for row in rows}


def memory_to_json(memory: Memory) -> dict[str, Any]:
    return dataclasses.asdict(memory)


def memory_from_json(data: dict[str, Any]) -> Memory:
    """The decision engine's memory (its own JSON, controlplane/rollout/soak.py); an older engine's is
    dropped, and the soak is read again from its start."""
    return Memory(data["soak"]) if data and isinstance(data.get("soak"), dict) else Memory()


def decision_to_json(decision: Decision) -> tuple[list[str], list[dict[str, Any]]]:
    checks = [{**dataclasses.asdict(c), "inputs": dict(c.inputs), "outcome": str(c.outcome)} for c in decision.checks]
    return list(decision.reasons), json.loads(json.dumps(checks, default=str))


class RolloutStore:
    def __init__(self, database_url: str, schema: str) -> None:
        self.database_url = database_url
        self.schema = schema
        self.locks = LockStore(database_url, schema)
        self._pass: psycopg.Connection[Any] | None = None

    @contextlib.contextmanager
    def one_connection(self) -> Iterator[None]:
        """Saves and records inside the block share one connection (a decider pass over a thousand
        tenants would otherwise spend most of its time connecting); each still commits on its own."""
        outer = self._pass
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            self._pass = conn
            try:
                yield
            finally:
                self._pass = outer

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        if self._pass is not None:
            with self._pass.transaction():
                yield self._pass
        else:
            with psycopg.connect(self.database_url) as conn:
                yield conn

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
            rows = conn.execute(query(_SELECT, self.schema)).fetchall()
        return {r[0]: Rollout(r[0], Phase(r[1]), r[2], memory_from_json(r[3])) for r in rows}

    def save(self, tenant: str, phase: Phase, soak_started_at: datetime, memory: Memory) -> None:
        with self._connection() as conn:
            conn.execute(query(_SAVE, self.schema),
                         (tenant, str(phase), soak_started_at, Jsonb(memory_to_json(memory))))

    def record(self, tenant: str, decision: Decision, dry_run: bool) -> None:
        reasons, checks = decision_to_json(decision)
        with self._connection() as conn:
            conn.execute(query(_RECORD, self.schema),
                         (tenant, str(decision.action), str(decision.verdict), dry_run, Jsonb(reasons), Jsonb(checks)))

    def set_phase(self, tenant: str, phase: Phase, kind: EventKind, who: str, reason: str) -> bool:
        """A change by hand (promote, hold, resume, a cutover back to v1), recorded as an event; False if
        no rollout exists."""
        with psycopg.connect(self.database_url) as conn, conn.transaction():
            result = conn.execute(query(_SET_PHASE, self.schema), (str(phase), tenant))
            if result.rowcount == 0:
                return False
            record_event(conn, self.schema, tenant, kind, who, {"reason": reason})
        return True

    def history(self, tenant: str, limit: int = 20) -> tuple[list[DecisionRecord], list[Event]]:
        with psycopg.connect(self.database_url) as conn:
            decisions = [DecisionRecord(*row)
                         for row in conn.execute(query(_DECISIONS, self.schema), (tenant, limit)).fetchall()]
            events = recent_events(conn, self.schema, tenant, limit)
        return decisions, events

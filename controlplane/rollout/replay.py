"""`dualstack rollout replay`: the real decision, step by step, against what a Prometheus held then.

At each step the source reads only up to that time (query API `time`/`end`), the soak folds the new
slices, and decide() says what it would have done. Nothing is recorded, locked or notified. The first
action that is not `continue` is the one the decider would have taken first; a rollback or a
promotion ends a real soak, so the verdict of the replay is the first of those, else the last
decision's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from controlplane.rollout.calibration import Plan
from controlplane.rollout.decide import Action, Decision, Verdict
from controlplane.rollout.decider import advance
from controlplane.rollout.soak import Soak
from controlplane.rollout.sources import EvidenceSource


@dataclass(frozen=True, slots=True)
class Step:
    at: datetime
    decision: Decision


@dataclass(frozen=True, slots=True)
class Replay:
    steps: tuple[Step, ...]
    first_action: Step | None  # the first decision that was not `continue`
    verdict: Verdict


def steps(source: EvidenceSource, tenant: str, plan: Plan, soak_started_at: datetime, start: datetime,
          end: datetime, step: timedelta) -> Iterator[Step]:
    soak = Soak(plan.specs, soak_started_at.timestamp())
    at = start
    while at <= end:
        yield Step(at, advance(soak, source, tenant, soak_started_at, plan, at))
        at += step


def replay(source: EvidenceSource, tenant: str, plan: Plan, soak_started_at: datetime, start: datetime,
           end: datetime, step: timedelta) -> Replay:
    taken = tuple(steps(source, tenant, plan, soak_started_at, start, end, step))
    first = next((s for s in taken if s.decision.action is not Action.CONTINUE), None)
    final = next((s for s in taken if s.decision.action in (Action.ROLLBACK, Action.PROMOTE)), None)
    verdict = (final or taken[-1]).decision.verdict if taken else Verdict.INCONCLUSIVE
    return Replay(taken, first, verdict)


def parse_time(text: str) -> datetime:
    """An ISO timestamp (UTC unless it says otherwise) or unix seconds."""
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_step(text: str) -> timedelta:
    """60s, 5m, 1h, or seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    seconds = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    if seconds < 1:
        raise ValueError(f"--step must be at least 1s, not {text!r}")
    return timedelta(seconds=seconds)

"""`dualstack cutover status SLUG`: the tenant's latest cutover and its journal, as lines or JSON."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from controlplane.config.model import Backend
from controlplane.cutover.journal import Step, steps_to, utc
from controlplane.state.cutovers import CutoverRecord, JournalEntry, StepStatus

NOT_STARTED = "not started"


def latest_per_step(record: CutoverRecord, entries: list[JournalEntry]) -> list[tuple[Step, JournalEntry | None]]:
    """Each step of the move in order, with its newest journal row (None: never started)."""
    newest = {entry.step: entry for entry in entries}
    to: Backend = "v2" if record.to_backend == "v2" else "v1"
    return [(step, newest.get(step.value)) for step in steps_to(to)]


def ending(record: CutoverRecord, entries: list[JournalEntry]) -> str:
    if record.outcome is not None:
        return f"{record.outcome}" + (f" at {utc(record.ended_at)}" if record.ended_at else "")
    running = [step for step, entry in latest_per_step(record, entries)
               if entry is not None and entry.status == StepStatus.STARTED]
    return "no end recorded: still running, or its process died" + (
        f" during {running[-1].label}" if running else "")


def status_lines(record: CutoverRecord, entries: list[JournalEntry]) -> list[str]:
    lines = [f"cutover {record.id} of {record.tenant}: {record.from_backend} -> {record.to_backend}, begun "
             f"{utc(record.started_at)} by {record.actor}: {ending(record, entries)}"]
    steps = latest_per_step(record, entries)
    width = max(len(step.label) for step, _ in steps)
    for step, entry in steps:
        if entry is None:
            lines.append(f"  {step.label:<{width}} {NOT_STARTED}")
            continue
        notes = [f"{key}: {value}" for key, value in entry.detail.items()]
        lines.append(f"  {step.label:<{width}} {entry.status:<12} {entry.at.astimezone(UTC):%H:%M:%S}" + (
            f"  {'; '.join(notes)}" if notes else ""))
    return lines


def status_json(record: CutoverRecord, entries: list[JournalEntry]) -> dict[str, Any]:
    return {
        "id": record.id, "tenant": record.tenant, "from": record.from_backend, "to": record.to_backend,
        "actor": record.actor, "started_at": record.started_at.isoformat(),
        "ended_at": record.ended_at.isoformat() if record.ended_at else None, "outcome": record.outcome,
        "steps": [{"step": step.value, "status": entry.status if entry else NOT_STARTED,
                   "at": entry.at.isoformat() if entry else None, "detail": entry.detail if entry else {}}
                  for step, entry in latest_per_step(record, entries)],
        "journal": [{"step": e.step, "status": e.status, "at": e.at.isoformat(), "detail": e.detail}
                    for e in entries],
    }

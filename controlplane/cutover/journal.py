"""The journal of a cutover: every step written to the state database as it happens (started, then
done, skipped, interrupted or failed), so that Ctrl-C or a crash leaves a record of where it
stopped and the same command, run again, continues from there.

Without a state database the journal is kept in memory only: the run still says what is done and
what is not when interrupted, and a re-run has only the routing file to go by."""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg

from controlplane.config.model import Backend
from controlplane.cutover.request import CutoverRequest, Say
from controlplane.state.cutovers import CutoverRecord, CutoverStore, Outcome, StepStatus


class Step(enum.StrEnum):
    """The steps of a cutover, in the order the driver takes them (the journal's `step` column)."""

    PREFLIGHT = "preflight"
    BULK_SYNC = "bulk_sync"  # v1's orders into v2 while writes flow: most of the work, outside the hold
    HOLD = "hold"  # every router worker holds the tenant's writes (reads flow)
    FINAL_SYNC = "final_sync"  # under the hold: nothing can race it
    FLIP = "flip"
    # Right after the flip to v2, before the release: v2's changes copied back into v1's store from
    # the first write v2 takes, even if the run stops before the routers confirm.
    REVERSE_SYNC_STARTED = "reverse_sync_started"
    RELEASE = "release"  # the held writes go on to the new backend, in arrival order
    ROUTERS_CONFIRMED = "routers_confirmed"
    SOAK_STARTED = "soak_started"
    ROLLOUT_ENDED = "rollout_ended"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


KNOWN_STEPS = frozenset(step.value for step in Step)
AFTER_FLIP = (Step.RELEASE, Step.ROUTERS_CONFIRMED)


def steps_to(to: Backend) -> tuple[Step, ...]:
    if to == "v2":
        return (Step.PREFLIGHT, Step.BULK_SYNC, Step.HOLD, Step.FINAL_SYNC, Step.FLIP, Step.REVERSE_SYNC_STARTED,
                *AFTER_FLIP, Step.SOAK_STARTED)
    # to v1, the final sync is the last reverse pass (v2 -> v1's store) under the hold
    return (Step.PREFLIGHT, Step.HOLD, Step.FINAL_SYNC, Step.FLIP, *AFTER_FLIP, Step.ROLLOUT_ENDED)


Boundary = Literal["begin", "end"]
StepHook = Callable[[Step, Boundary], None]
"""Called as each step begins (its `started` row written) and once its work is done (before its
`done` row): tests raise KeyboardInterrupt from it to stop a cutover at an exact point."""


def utc(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def no_hook(step: Step, boundary: Boundary) -> None:
    del step, boundary


class Journal:
    """One cutover's steps: what this run and the runs before it did, and the record of it."""

    def __init__(self, request: CutoverRequest, store: CutoverStore | None, cutover: CutoverRecord | None,
                 hook: StepHook = no_hook) -> None:
        self.request = request
        self.store = store
        self.cutover = cutover
        self.hook = hook
        self.done: dict[Step, dict[str, Any]] = {}  # step -> its detail, as recorded when done or skipped
        self.current: Step | None = None
        self.continued = False  # it continues a cutover an earlier run began (and did not finish)
        if store is not None and cutover is not None:
            for entry in store.entries(cutover.id):
                if entry.status in (StepStatus.DONE, StepStatus.SKIPPED) and entry.step in KNOWN_STEPS:
                    self.done[Step(entry.step)] = entry.detail

    @classmethod
    def open(cls, request: CutoverRequest, declared: Backend, say: Say, hook: StepHook = no_hook) -> Journal:
        """Continue the tenant's unfinished cutover to the same backend, or begin a new one."""
        r = request
        if not r.state_url:
            say("journal: in memory only (no --state-database-url): a re-run has only the routing file to go by")
            return cls(r, None, None, hook)
        store = CutoverStore(r.state_url, r.state_schema)
        latest = store.latest(r.slug)
        if latest is not None and latest.continuable:
            if latest.to_backend == r.to:
                store.reopen(latest.id)
                journal = cls(r, store, latest, hook)
                journal.continued = True
                say(f"continuing cutover {latest.id} ({latest.from_backend} -> {latest.to_backend}, begun "
                    f"{utc(latest.started_at)} by {latest.actor}, "
                    f"{latest.outcome or 'no end recorded'}) from its journal; {journal.summary()[0]}")
                return journal
            store.end(latest.id, Outcome.SUPERSEDED)
            say(f"cutover {latest.id} ({latest.from_backend} -> {latest.to_backend}) did not finish; this cutover "
                f"to {r.to} supersedes it")
        return cls(r, store, store.begin(r.slug, declared, r.to, r.actor), hook)

    @contextlib.contextmanager
    def step(self, step: Step) -> Iterator[dict[str, Any]]:
        """Record the step around its work; the work may fill in the detail recorded when it is done."""
        self.current = step
        self.done.pop(step, None)  # done again: not done until it is
        detail: dict[str, Any] = {}
        try:
            self._write(step, StepStatus.STARTED, {})
            self.hook(step, "begin")
            yield detail
            self.hook(step, "end")
        except KeyboardInterrupt:
            self._write_quietly(step, StepStatus.INTERRUPTED, {})
            raise
        except BaseException as exc:
            self._write_quietly(step, StepStatus.FAILED, {"error": str(exc)[:500]})
            raise
        self._write(step, StepStatus.DONE, detail)
        self.done[step] = detail
        self.current = None

    def skip(self, step: Step, why: str) -> None:
        """The step's effect already holds: recorded as skipped, unless an earlier run did it."""
        if step not in self.done:
            self.done[step] = {"skipped": why}
            self._write(step, StepStatus.SKIPPED, {"skipped": why})

    def redo(self) -> None:
        """The flip does not hold (it never happened, or the file was changed back): every step is
        done again, whatever earlier runs did."""
        self.done.clear()

    def has_done(self, step: Step) -> bool:
        return step in self.done

    @property
    def clean(self) -> bool:
        """Every sync this cutover ran (in any of its runs) was clean."""
        return all(detail.get("clean", True) for detail in self.done.values())

    def summary(self) -> tuple[str, str]:
        """What is done, and what is not: one line each."""
        steps = steps_to(self.request.to)
        done = [s.label for s in steps if s in self.done]
        missing = [s.label + (" (interrupted)" if s is self.current else "") for s in steps if s not in self.done]
        return f"done: {', '.join(done) or 'nothing'}", f"not done: {', '.join(missing) or 'nothing'}"

    def end(self, outcome: Outcome) -> None:
        if self.store is not None and self.cutover is not None:
            with contextlib.suppress(psycopg.Error):  # the step rows already say where it stopped
                self.store.end(self.cutover.id, outcome)

    def _write(self, step: Step, status: StepStatus, detail: dict[str, Any]) -> None:
        if self.store is not None and self.cutover is not None:
            self.store.write(self.cutover.id, str(step), status, detail)

    def _write_quietly(self, step: Step, status: StepStatus, detail: dict[str, Any]) -> None:
        """While an exception is on its way out: a journal that cannot be written must not hide it
        (the `started` row already says where the cutover stopped)."""
        with contextlib.suppress(psycopg.Error):
            self._write(step, status, detail)

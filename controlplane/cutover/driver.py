"""Cutover: the order of a move. Preflight and, if it passes, the steps, each written to the
cutover's journal as it happens; Ctrl-C or a crash leaves the journal saying where it stopped, and
running the same command again continues from there: steps whose effect still holds are skipped
(everything up to the flip, once the routing file declares the target), the others are done again
(the release of a hold left open, the routers' confirmation, a reverse pass). Stopped or
interrupted while the tenant's writes are held, it releases them to the backend the routing file
declares."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from controlplane.config import load_config
from controlplane.config.edit import set_backend
from controlplane.config.model import Backend
from controlplane.cutover import hold, steps
from controlplane.cutover.journal import Journal, Step, StepHook, no_hook, steps_to
from controlplane.cutover.preflight import preflight
from controlplane.cutover.request import CHECKS, Check, CutoverRequest, CutoverStopped, Say
from controlplane.errors import Interrupted, UsageProblem
from controlplane.evidence import EvidenceCheck
from controlplane.invocation import command_path
from controlplane.reverse import cutover as reverse_sync
from controlplane.state.cutovers import CutoverStore, Outcome
from controlplane.state.events import EventKind
from controlplane.state.holds import Hold


class Cutover:
    def __init__(self, request: CutoverRequest, say: Say = print, on_step: StepHook = no_hook) -> None:
        if request.to not in ("v1", "v2"):
            raise UsageProblem(f"--to must be v1 or v2, not '{request.to}'")
        unknown = set(request.overrides) - set(CHECKS)
        if unknown:
            raise UsageProblem(f"no check named {', '.join(sorted(unknown))} (checks: {', '.join(CHECKS)})")
        if request.overrides and not request.reason:
            raise UsageProblem("an override needs --reason (it is recorded with the cutover)")
        if request.overrides and not request.state_url:
            raise UsageProblem("an override is recorded in the state database: pass --state-database-url "
                               "(or set DUALSTACK_STATE_DATABASE_URL)")
        self.request = request
        self.say = say
        self.config = load_config(request.config_path)
        if request.slug not in self.config.tenants:
            raise UsageProblem(f"no tenant '{request.slug}' in {request.config_path}")
        self.policy = self.config.cutover
        self.on_step = on_step
        self.reverse_baseline: datetime | None = None  # this run's: see reverse_sync.baseline
        self.evidence: EvidenceCheck | None = None  # one for this run's syncs: what one judged is not asked again

    def preflight(self) -> list[Check]:
        return preflight(self.request, self.config, self.say)

    def run(self) -> bool:
        """Preflight and, if it passes, the move. True when every step finished clean.

        Raises Interrupted on Ctrl-C (after saying what is done and what is not), CutoverStopped when
        a check or a step refuses to go on (or another cutover of the tenant is running); either way
        the journal says where it stopped."""
        r = self.request
        if not r.state_url:
            return self._run()
        with CutoverStore(r.state_url, r.state_schema).exclusive(r.slug) as alone:
            if not alone:
                raise CutoverStopped(
                    f"another cutover of {r.slug} is running (it holds the tenant's cutover lock in the state "
                    f"database); nothing was changed. `{command_path()} cutover status {r.slug}` shows where it is: "
                    "wait for it to end, or stop it, then run this command again")
            return self._run()

    def _run(self) -> bool:
        r = self.request
        declared = self.config.tenants[r.slug].backend
        journal = Journal.open(r, declared, self.say, self.on_step)
        try:
            clean = self._move_releasing(journal, declared)
        except KeyboardInterrupt:
            journal.end(Outcome.INTERRUPTED)
            for line in journal.summary():
                self.say(line)
            where = f"cutover {journal.cutover.id}'s journal" if journal.cutover else "the routing file"
            if self._declares_target():
                state = (f"{r.slug} is flipped to {r.to} in {r.config_path}, but the steps after the flip did not "
                         "finish: run the same command to finish them")
            else:
                state = (f"{r.slug} was not flipped: {r.config_path} still declares it on {declared}; a final sync "
                         "may have copied orders into v2, which is harmless")
            raise Interrupted(f"the cutover of {r.slug} to {r.to} stopped" + (
                f" during {journal.current.label}" if journal.current else "") + f"; run the same command again "
                f"to continue from {where} ({state})") from None
        except BaseException:
            journal.end(Outcome.STOPPED)
            raise
        journal.end(Outcome.DONE)
        return clean

    def _move_releasing(self, journal: Journal, declared: Backend) -> bool:
        try:
            return self._move(journal, declared)
        except BaseException:
            # Stopped or interrupted while writes were held: they go on now, where the file sends them.
            hold.release_on_stop(self.request, self.request.to if self._declares_target() else declared, self.say)
            raise

    def _declares_target(self) -> bool:
        """Whether the routing file now declares the tenant on its new backend (what a Ctrl-C left)."""
        try:
            return load_config(self.request.config_path).tenants[self.request.slug].backend == self.request.to
        except Exception:  # an unreadable file after Ctrl-C: say it was not flipped; the re-run decides
            return False

    def _move(self, journal: Journal, declared: Backend) -> bool:
        r = self.request
        if declared == r.to:
            # An earlier run flipped the file and stopped: everything up to the flip holds; finish its work.
            self.say(f"{r.slug} is already declared on {r.to} in {r.config_path}: checking the steps after "
                     "the flip")
            for step in steps_to(r.to)[:steps_to(r.to).index(Step.FLIP) + 1]:
                journal.skip(step, f"the routing file already declared {r.to}")
            return self._after_flip(journal, resumed=True)
        if journal.done:
            self.say(f"the routing file still declares {r.slug} on {declared}: every step runs again")
            journal.redo()
        self.say(f"cutover of {r.slug}: {declared} -> {r.to}")
        with journal.step(Step.PREFLIGHT):
            self.say("preflight:")
            checks = self.preflight()
            failed = [c.name for c in checks if not c.passes]
            if failed:
                raise CutoverStopped(f"preflight failed ({', '.join(failed)}); nothing was changed. Fix it, or "
                                     "override a check with --override NAME --reason TEXT")
        steps.record(r, EventKind.CUTOVER_STARTED, {"from": declared, "to": r.to,
                                                    "checks": [dataclasses.asdict(c) for c in checks]})
        if r.to == "v2":
            with journal.step(Step.BULK_SYNC) as detail:
                detail["clean"] = self._sync("bulk sync")
                self.reverse_baseline = reverse_sync.baseline(r, self.say)
                detail["reverse_baseline"] = self.reverse_baseline.isoformat() if self.reverse_baseline else None
        held: Hold | None = None
        with journal.step(Step.HOLD) as detail:
            held = hold.take(r, self.policy, declared, journal.cutover.id if journal.cutover else None, self.say)
            detail["hold_id"] = held.id if held else None
        with journal.step(Step.FINAL_SYNC) as detail:
            if r.to == "v2":
                detail["clean"] = self._sync("final sync")
            else:  # the way back: v2's last changes into v1's store, with nothing racing the pass
                verified = next((c.verified_until for c in checks if c.name == reverse_sync.NAME), None)
                detail.update(reverse_sync.final_pass(r, self.say, verified))
        with journal.step(Step.FLIP):
            hold.within_bound(r, held, declared)
            set_backend(r.config_path, r.slug, r.to)
            self.say(f"flipped: {r.config_path} now declares {r.slug} on {r.to} (comments and layout kept)")
        return self._after_flip(journal, resumed=False, held=held)

    def _catch_up(self, held: Hold) -> dict[str, Any]:
        """The hold lasted its whole bound: the routers may have ended it on their own clocks and sent
        writes to the old backend after the final sync. One more sync carries them over."""
        r = self.request
        old = "v1" if r.to == "v2" else "v2"
        self.say(f"release: warning: the writes of {r.slug} were held {held.elapsed_s():.2f} s, the whole "
                 f"cutover.hold_s ({held.hold_s:g} s): the routers may have ended the hold on their own and sent "
                 f"writes to {old} after the final sync; one catch-up sync carries them to {r.to}")
        if r.to == "v2":
            clean, copied = steps.sync(r, "catch-up sync", self.say, self._evidence())
            return {"clean": clean, "copied": copied}
        return reverse_sync.catch_up(r, self.say)

    def _evidence(self) -> EvidenceCheck:
        if self.evidence is None:
            self.evidence = EvidenceCheck.from_environment()
        return self.evidence

    def _sync(self, label: str) -> bool:
        r = self.request
        synced = steps.sync(r, label, self.say, self._evidence())[0]
        if not synced and "migration" not in r.overrides:
            raise CutoverStopped(f"the {label} found rows that did not migrate clean (above) although the "
                                 "preflight passed; nothing was flipped (v2 keeps what it synced, which is "
                                 "harmless). Look at those rows, then run the cutover again")
        return synced

    def _after_flip(self, journal: Journal, *, resumed: bool, held: Hold | None = None) -> bool:
        r = self.request
        if r.to == "v2":
            # Before the release: from the first write v2 takes, the reverse sync is recorded as running (and
            # its first pass made), even if this run stops before the routers confirm. Again on a re-run: it
            # goes on from the record this cutover began (a pass is idempotent), never re-opens a completed one.
            since = journal.cutover.started_at if journal.continued and journal.cutover else None
            with journal.step(Step.REVERSE_SYNC_STARTED) as detail:
                detail.update(reverse_sync.start(r, self.say, fresh=not resumed, since=since,
                                                 baseline=None if resumed else self.reverse_baseline))
        # Always again: a hold an earlier run left open is released (the routers re-read the file first).
        with journal.step(Step.RELEASE) as detail:
            overran = held is not None and held.elapsed_s() >= held.hold_s
            held_s = hold.release(r, held, r.to, self.say)
            if held_s is not None:
                detail["held_s"] = round(held_s, 3)
            if overran and held is not None:
                detail["catch_up"] = self._catch_up(held)
        with journal.step(Step.ROUTERS_CONFIRMED):  # always again: a router may have restarted meanwhile
            steps.release_stale_locks(r, self.say)
            steps.wait_for_routers(r, self.policy, self.say)
        if r.to == "v2":
            with journal.step(Step.SOAK_STARTED):
                steps.start_soak(r, self.config, self.say, only_if_missing=resumed or journal.has_done(
                    Step.SOAK_STARTED))
        else:
            with journal.step(Step.ROLLOUT_ENDED):
                steps.end_rollout(r, self.say)
        clean = journal.clean
        steps.record(r, EventKind.CUTOVER_DONE, {"to": r.to, "clean": clean, "resumed": resumed})
        self.say(f"done: {r.slug} is served by {r.to}." + (
            "" if clean else " Some sync step was not clean (above): look at those orders."))
        steps.next_steps(r, self.say)
        return clean

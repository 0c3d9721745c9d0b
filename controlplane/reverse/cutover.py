"""The reverse sync's three points in a cutover's life:

- after a cutover to v2 flips: begin the tenant's reverse sync (recorded) and make its first pass
  (`start`), so v1 holds every order from the first moment v2 takes writes;
- before `cutover --to v1` flips: the `reverse_sync` check (`check`) makes last passes and
  verifies both sides, and the final sync under the write hold (`final_pass`) does it once more with
  nothing racing it: every order v2 last changed before that pass is in v1's store with a status
  at least as final. If v2's database cannot be reached, the record decides: the way back goes on
  only when the follower's last clean pass was caught up (its lag within `cutover.reverse_sync_lag_s`),
  it has tried since and failed only because v2's database went away, it tried recently, v2's
  database stopped answering it within `cutover.reverse_sync_lag_s` of that pass, and v2's service
  itself does not answer its health check (it cannot be taking orders v1 lacks); the check then says
  what that covers ("v1 holds everything v2 had up to T; v2 stopped within N s of it");
- `dualstack cutover complete SLUG` (`complete`): ops are sure, the reverse path ends.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import Any, Final

from controlplane.config.model import CutoverPolicy, UpstreamSpec
from controlplane.cutover.journal import utc
from controlplane.cutover.probe import backend_health
from controlplane.cutover.request import Check, CutoverRequest, CutoverStopped, Say
from controlplane.errors import UsageProblem
from controlplane.invocation import command_path
from controlplane.reverse.run import Verification, reverse_pass, verify_both_sides
from controlplane.reverse.v1_stores import ReverseSyncProblem, writer_for
from controlplane.state.cutovers import CutoverStore, Outcome
from controlplane.state.reverse_syncs import ReverseSyncRecord, ReverseSyncStore

NAME: Final = "reverse_sync"
SHOWN_BEHIND: Final = 5
# A v2 transaction that began before a pass and committed during it is the next pass's: verified
# behind once, it is copied by the pass after. What is still behind after these many is real.
LAST_PASSES: Final = 3
FINAL_PASSES: Final = 2  # under the hold only a status read's settlement reaches v2: a second pass covers a late one


def follower_command(request: CutoverRequest) -> str:
    store = shlex.quote(request.v1.argument) if request.v1 is not None else "V1STORE"
    return f"{command_path()} reverse-sync --from {store} --tenant {request.slug} --follow"


def next_step(request: CutoverRequest) -> str:
    """The `next:` line of a finished cutover about the reverse path."""
    if request.to == "v2":
        return (f"  keep `{follower_command(request)}` running (v2 -> v1: keeps v1 holding every order v2 "
                f"takes, so the way back loses nothing even with v2 stopped; systemd: "
                f"dualstack-reverse-sync@{request.slug}); once sure: "
                f"{command_path()} cutover complete {request.slug}")
    return (f"  keep the reverse sync running while v2 still receives notifications for its orders; then "
            f"{command_path()} cutover complete {request.slug}")


def baseline(request: CutoverRequest, say: Say) -> datetime | None:
    """Before a cutover to v2 takes the hold, while writes flow to v1: one full reverse pass, not
    recorded (the tenant is still on v1), so that the first recorded pass after the flip, with the
    writes held, only reads what v2 changed since. v2's clock when it began (every change v2
    committed before it is in v1's store now); None when it could not be made (the first pass after
    the flip is then a full one)."""
    r = request
    if r.v1 is None or not r.database_url:
        return None
    try:
        report = reverse_pass(writer_for(r.v1), r.database_url, r.slug, r.layout.schema)
    except ReverseSyncProblem as exc:
        say(f"reverse baseline: failed ({exc}); the first reverse pass after the flip reads every order")
        return None
    say(f"reverse baseline (before the hold): {report.line()}")
    return report.watermark


def start(request: CutoverRequest, say: Say, *, fresh: bool = True, since: datetime | None = None,
          baseline: datetime | None = None) -> dict[str, Any]:
    """After the flip to v2, before the release: begin the reverse sync and make its first pass. What
    it did goes into the journal.

    `fresh`: this run flipped the tenant: begin from scratch; the first pass reads what v2 changed
    since `baseline` (this run's full pass before the hold), or every order. Otherwise (a re-run
    found the file flipped) the record decides: a running reverse sync begun since `since` (when the
    continued cutover began; None: a re-run of a finished one) goes on from its watermark; a completed
    one stays completed (`cutover complete` was ops' word), unless it was completed before `since`
    (an earlier move's); none, or an earlier move's: begun now."""
    r = request
    if r.v1 is None or not r.database_url:
        say("reverse sync: not started (no --from/--database-url): v1 will not hold the orders v2 takes; start "
            f"`{follower_command(r)}` before anything else")
        return {"started": False}
    writer = writer_for(r.v1)
    store = ReverseSyncStore(r.state_url, r.state_schema) if r.state_url else None
    record = store.get(r.slug) if store is not None and not fresh else None
    watermark = baseline if fresh else None
    if store is not None and record is not None and not record.running and (
            since is None or (record.completed_at is not None and record.completed_at >= since)):
        say(f"reverse sync: completed at {utc(record.completed_at or record.started_at)} by {record.completed_by}; "
            "left completed (a new cutover to v2 begins a new one)")
        return {"started": False, "completed": True}
    going_on = (store is not None and record is not None and record.running
                and (since is None or record.started_at >= since))
    if going_on and record is not None:
        watermark = record.watermark  # this cutover's: go on from it
    elif store is not None:
        store.begin(r.slug, writer.name, r.actor)
    try:
        report = reverse_pass(writer, r.database_url, r.slug, r.layout.schema, watermark=watermark)
    except ReverseSyncProblem as exc:
        if store is not None:
            store.failed(r.slug, str(exc), exc.side)
        # The flip is done: a failed first pass is the follower's to repeat, not a reason to undo it.
        say(f"reverse sync: begun, but its first pass failed ({exc}); the follower repeats it")
        return {"started": True, "first_pass": "failed", "error": str(exc)[:300]}
    if store is not None:
        store.passed(r.slug, report.watermark, report.lag_s, report.written.copied)
    say(f"reverse sync: {'going on' if going_on else 'begun'}; first pass: {report.line()}")
    return {"started": True, "copied": report.written.copied, "caught_up_to": report.watermark.isoformat(),
            **({"read": report.read} if watermark is not None else {})}


def catch_up(request: CutoverRequest, say: Say) -> dict[str, Any]:
    """After the way back flipped under a hold that lasted its whole bound: one more reverse pass, for
    writes the routers may have sent to v2 after the final sync. Its outcome goes into the journal
    (a failure is said, not raised: the flip is done, and the follower repeats the pass)."""
    r = request
    if r.v1 is None or not r.database_url:
        say("catch-up sync: skipped (no --from/--database-url); run "
            f"`{follower_command(r)}` once to carry v2's last writes into v1")
        return {"skipped": True}
    store = ReverseSyncStore(r.state_url, r.state_schema) if r.state_url else None
    record = store.get(r.slug) if store is not None else None
    running = record is not None and record.running
    try:
        report = reverse_pass(writer_for(r.v1), r.database_url, r.slug, r.layout.schema,
                              watermark=record.watermark if record is not None and running else None)
    except ReverseSyncProblem as exc:
        say(f"catch-up sync: failed ({exc}); run `{follower_command(r)}` once it can reach both sides")
        return {"clean": False, "error": str(exc)[:300]}
    if store is not None and running:
        store.passed(r.slug, report.watermark, report.lag_s, report.written.copied)
    say(f"catch-up sync: {report.line()}")
    return {"clean": True, "copied": report.written.copied}


def check(request: CutoverRequest, policy: CutoverPolicy, v2: UpstreamSpec) -> Check:
    """Before the way back flips: one last pass, then both sides verified (or, v2's database gone,
    the record and whether v2 itself still answers)."""
    r = request
    if r.v1 is None or not r.database_url:
        return Check(NAME, False, "cannot verify that v1 holds the orders v2 took: pass --from (v1's store) and "
                                  "--database-url (v2's)")
    store = ReverseSyncStore(r.state_url, r.state_schema) if r.state_url else None
    record = store.get(r.slug) if store is not None else None
    try:
        verification, until, copied = _last_passes(r, store, record, LAST_PASSES, writes_flow=True)
    except ReverseSyncProblem as exc:
        if exc.side == "v2":
            now = store.clock() if store is not None else datetime.now(UTC)
            return from_record(record, policy, str(exc), now, backend_health(v2, r.slug))
        return Check(NAME, False, f"cannot write v1's store: {exc}")
    newer = (f"; {verification.newer} changed on v2 since are the follower's (`{follower_command(r)}`)"
             if verification.newer else "")
    if not verification.clean:
        shown = ", ".join(f"{order_id} ({why})" for order_id, why in verification.behind[:SHOWN_BEHIND])
        return Check(NAME, False, f"{len(verification.behind)} of {verification.checked} orders v2 holds are not in "
                                  f"v1's store as final as on v2 after {LAST_PASSES} last passes: {shown}. Going "
                                  "back now would lose them: look at these orders in v1 (`dualstack reverse-sync` "
                                  "says what it left alone and why)")
    return Check(NAME, True, f"v1 holds all {verification.checked} orders v2 held at {utc(until)}, each as final "
                             f"(the last passes copied {copied}){newer}{_v1_ahead(verification)}",
                 verified_until=until.isoformat())


def _v1_ahead(verification: Verification) -> str:
    """Orders whose money moved on v1's word only, as far as v2 knows: the way back keeps v1's rows, so
    customers will see them so again. Said, not refused: the way back is the safe road, and v1 held
    them before (a cutover to v2 reports such claims `without evidence`)."""
    if not verification.ahead:
        return ""
    shown = ", ".join(f"{order_id} ({why})" for order_id, why in verification.ahead[:SHOWN_BEHIND])
    return (f". Mind {len(verification.ahead)} v1 holds as more final than v2 does, which it keeps: {shown}; v1 "
            "applies notifications unverified, so ask Midtrans about these before customers see them again")


def final_pass(request: CutoverRequest, say: Say, verified_until: str | None = None) -> dict[str, Any]:
    """The way back's final sync, under the write hold: v2's last changes into v1's store with nothing
    racing the pass, then both sides verified: with `verified_until` (the preflight's reverse_sync
    check verified every order v2 changed before it), only the orders v2 changed since, a small delta
    however many orders the tenant has. v2's database unreachable: the preflight's check went by the
    reverse sync's record, and this says so. What it did goes into the journal."""
    r = request
    if r.v1 is None or not r.database_url:
        say("final sync: skipped (no --from/--database-url; the reverse_sync check was overridden)")
        return {"skipped": True}
    store = ReverseSyncStore(r.state_url, r.state_schema) if r.state_url else None
    record = store.get(r.slug) if store is not None else None
    overridden = NAME in r.overrides
    try:
        verification, until, copied = _last_passes(
            r, store, record, FINAL_PASSES, writes_flow=False,
            since=datetime.fromisoformat(verified_until) if verified_until else None)
    except ReverseSyncProblem as exc:
        if exc.side == "v2":
            say(f"final sync: v2's database cannot be reached ({exc}); v1 holds what the reverse sync's record "
                "says (the preflight's reverse_sync check)")
            return {"v2_reachable": False}
        if overridden:
            say(f"final sync: cannot write v1's store ({exc}); going on (reverse_sync overridden)")
            return {"clean": False, "error": str(exc)[:300]}
        raise CutoverStopped(f"the last reverse pass could not write v1's store ({exc}); nothing was flipped and "
                             "the held writes go on to v2. Fix v1's store, then run the same command again") from None
    if not verification.clean and not overridden:
        shown = ", ".join(f"{order_id} ({why})" for order_id, why in verification.behind[:SHOWN_BEHIND])
        raise CutoverStopped(f"under the hold, {len(verification.behind)} of {verification.checked} orders v2 holds "
                             f"are still not in v1's store as final as on v2: {shown}; nothing was flipped and the "
                             "held writes go on to v2. Look at these orders in v1, then run the same command again")
    changed = f"v2 changed since the preflight verified both sides ({utc(verification.since)}) and held at" \
        if verification.since is not None else "v2 held at"
    say(f"final sync: under the hold, v1 holds {'all ' if verification.clean else ''}{verification.checked} orders "
        f"{changed} {utc(until)} (this pass copied {copied})"
        + ("" if verification.clean else f"; {len(verification.behind)} behind (reverse_sync overridden)")
        + (f"; {verification.newer} changed on v2 since (a status read's settlement under the hold): the "
           "reverse sync's follower carries them" if verification.newer else ""))
    return {"clean": verification.clean, "copied": copied, "verified": verification.checked,
            "changed_since": verification.newer,
            **({"verified_since": verified_until} if verification.since is not None else {})}


def _last_passes(r: CutoverRequest, store: ReverseSyncStore | None, record: ReverseSyncRecord | None,
                 passes: int, *, writes_flow: bool, since: datetime | None = None
                 ) -> tuple[Verification, datetime, int]:
    """Up to `passes` reverse passes, each followed by the verification (of the orders v2 changed
    since `since`; None: all), until one verifies clean: (the last verification, the time up to which
    it verified, orders copied in all). ReverseSyncProblem when a side fails.

    `writes_flow` (the preflight's check): every verification looks up to the first pass's start. An
    order a transaction changed before then but committed while that pass read shows as behind once,
    and the next pass copies it (OVERLAP_S); verifying up to each new pass's start instead would meet
    the next write in flight each time, and a tenant taking orders would never verify clean. Under
    the hold (the final sync) each verification looks up to its own pass's start: only a status
    read's settlement can reach v2 then, and one landing between passes is verified, not only copied."""
    assert r.v1 is not None and r.database_url
    writer = writer_for(r.v1)
    watermark = record.watermark if record is not None and record.running else None
    copied = 0
    until: datetime | None = None
    for _ in range(passes):
        report = reverse_pass(writer, r.database_url, r.slug, r.layout.schema, watermark=watermark)
        copied += report.written.copied
        if store is not None and record is not None and record.running:
            store.passed(r.slug, report.watermark, report.lag_s, report.written.copied)
        if until is None or not writes_flow:
            until = report.watermark
        verification = verify_both_sides(writer, r.database_url, r.slug, r.layout.schema, until=until, since=since)
        if verification.clean:
            break
        watermark = report.watermark
    assert until is not None
    return verification, until, copied


def from_record(record: ReverseSyncRecord | None, policy: CutoverPolicy, error: str, now: datetime,
                v2_health: tuple[bool, str]) -> Check:
    """v2's database cannot be reached: what the reverse sync's record lets the way back rely on.
    It passes only when what v1 may lack is small and cannot grow: the follower's last clean pass was
    caught up, v2's database stopped answering it within `cutover.reverse_sync_lag_s` of that pass
    (`failing_since - watermark`), and v2's service does not answer its health check (`v2_health`:
    the preflight's probe of v2, healthy or not and what it said), so it cannot be taking orders v1
    lacks. `now` is the state database's clock (the record's timestamps are)."""
    bound = policy.reverse_sync_lag_s
    refuse = f"{error}, and "
    override = "if the orders v2 took are known to be elsewhere, --override reverse_sync --reason ..."
    if record is None:
        return Check(NAME, False, refuse + "no reverse sync is recorded for this tenant (none was begun, or no "
                     "--state-database-url): the orders v2 took may not be in v1. Bring v2's database back, or "
                     + override)
    if not record.running:
        return Check(NAME, False, refuse + f"the reverse sync was completed at {utc(record.completed_at or now)} "
                     f"by {record.completed_by}: v1 lacks whatever v2 took since. Bring v2's database back, or "
                     + override)
    if record.watermark is None or record.lag_s is None:
        return Check(NAME, False, refuse + "no reverse pass has finished yet: v1 may lack every order v2 took. "
                     "Bring v2's database back, or " + override)
    if record.lag_s > bound:
        return Check(NAME, False, refuse + f"the last clean reverse pass was {record.lag_s:.0f} s behind v2, more "
                     f"than cutover.reverse_sync_lag_s ({bound:g} s): v1 may lack what v2 took in that time. "
                     "Bring v2's database back, or " + override)
    if record.failing_side == "v1":
        return Check(NAME, False, refuse + f"since {utc(record.failing_since or now)} the reverse passes failed "
                     f"writing v1 ({record.last_error}) while v2 may still have taken orders: v1 may lack them. "
                     "Bring v2's database back, or " + override)
    tried = record.last_attempt_at or record.last_pass_at
    if tried is None or (now - tried).total_seconds() > bound:
        return Check(NAME, False, refuse + f"the follower has not tried since {utc(tried or record.started_at)} "
                     "(it is not running): v2 may have taken orders it never copied. Start it "
                     "(`dualstack reverse-sync ... --follow`) or bring v2's database back")
    stopped = record.failing_since or now
    uncovered = max(0.0, (stopped - record.watermark).total_seconds())
    if uncovered > bound:
        return Check(NAME, False, refuse + f"v1 holds v2's changes up to {utc(record.watermark)} (the last clean "
                     f"reverse pass), but v2's database answered no pass since {utc(stopped)}, {uncovered:.0f} s "
                     f"later: more than cutover.reverse_sync_lag_s ({bound:g} s); v2 may have taken orders in that "
                     "time that v1 lacks. Bring v2's database back (the check then verifies both sides), or "
                     + override)
    healthy, said = v2_health
    if healthy:
        return Check(NAME, False, refuse + f"v2's service still answers ({said}) although its database cannot be "
                     "reached from here: it may be taking orders v1 lacks. Stop v2, or find why its database cannot "
                     "be reached from here (the follower and this check use the same --database-url), then run "
                     "again; or " + override)
    return Check(NAME, True, f"{error}; v2 does not answer either ({said}); going by the reverse sync's record: v1 "
                             f"holds everything v2 had up to {utc(record.watermark)} (its last clean pass, "
                             f"{record.lag_s:.1f} s behind), and v2 stopped within {uncovered:.0f} s of it "
                             f"(cutover.reverse_sync_lag_s: {bound:g} s): orders v2 took in those {uncovered:.0f} s, "
                             "if any, are not in v1")


def complete(state_url: str, schema: str, slug: str, actor: str) -> str:
    """End the tenant's reverse sync; refused unless a cutover to v2 is done for it."""
    latest = CutoverStore(state_url, schema).latest(slug)
    store = ReverseSyncStore(state_url, schema)
    record = store.get(slug)
    if latest is None or record is None:
        raise UsageProblem(f"no cutover of {slug} to v2 is done (no reverse sync is recorded): there is no "
                           f"reverse path to end. `{command_path()} cutover status {slug}` shows its cutovers")
    if latest.to_backend == "v2" and latest.outcome != Outcome.DONE:
        raise UsageProblem(f"the cutover of {slug} to v2 (cutover {latest.id}) has not finished: finish it first "
                           f"(run the same `{command_path()} cutover {slug} --to v2 ...` again), then complete it")
    if not record.running:
        return (f"{slug}: the reverse sync was already completed at {utc(record.completed_at or record.started_at)} "
                f"by {record.completed_by}; nothing changed")
    ended = store.complete(slug, actor)
    lag = ended.lag_at(store.clock()) if ended else None
    caught = f"; v1 held v2's changes up to {utc(ended.watermark)}" if ended and ended.watermark else ""
    return (f"{slug}: reverse sync completed{caught}{f' ({lag:.0f} s ago)' if lag is not None else ''}. The follower "
            "stops at its next pass; from now on v2's orders and status changes are no longer copied into v1 "
            "(a later way back to v1 would not have what v2 takes from here)")

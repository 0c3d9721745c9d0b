"""The write hold around the final sync and the flip.

Every router worker registered in the state database holds the tenant's writes (reads flow) before
the final sync starts; the sync then runs with nothing to race it, the routing file flips, and the
held writes are released to the new backend in arrival order. The hold is bounded by
`cutover.hold_s`: a worker that does not confirm in time, or a final sync that leaves no time for
the flip, aborts the cutover, and the held writes go on to the old backend with nothing flipped.
Each router also ends a hold on its own clock at hold_s, so a cutover that dies cannot freeze a
tenant (proxy/router/holds.py); since every router's clock starts after the cutover's, a flip made
within the cutover's bound is in the file each router re-reads before its held writes go on.
"""

from __future__ import annotations

import time
from typing import Final

import psycopg

from controlplane.config.model import Backend, CutoverPolicy
from controlplane.cutover.request import Check, CutoverRequest, CutoverStopped, Say
from controlplane.invocation import command_path
from controlplane.state.holds import RECENT_WORKER_S, Hold, HoldStore, RouterWorker

CONFIRM_POLL_S: Final = 0.01
# The share of hold_s left for the flip itself: past the rest, the final sync took too long.
FLIP_SHARE: Final = 0.1


def holders(request: CutoverRequest) -> Check:
    """The preflight's `hold` check: there are router workers to hold the tenant's writes."""
    r = request
    if not r.state_url:
        return Check("hold", False, "the write hold goes through the state database: pass --state-database-url "
                                    "(or set DUALSTACK_STATE_DATABASE_URL)")
    store = HoldStore(r.state_url, r.state_schema)
    lost = store.lost_workers()
    if lost:
        names = "; ".join(str(w) for w in lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")
        return Check("hold", False, f"{len(lost)} router worker(s) registered within the last "
                                    f"{RECENT_WORKER_S / 60:g} minutes are not alive now: {names}. A worker cut off "
                                    "from the state database may still forward writes it cannot hold, so they "
                                    "could race the final sync. See its log and restart it (a worker that stops "
                                    "cleanly unregisters; one that died counts no more "
                                    f"{RECENT_WORKER_S / 60:g} minutes after it was last seen), or, when you know "
                                    "it forwards nothing, `--override hold --reason TEXT`")
    workers = store.alive_workers()
    if not workers:
        return Check("hold", False, "no router worker is registered in the state database, so none can hold "
                                    f"{r.slug}'s writes during the flip: start the routers with "
                                    "--state-database-url (`--override hold --reason TEXT` moves without a hold; "
                                    "writes may then race the final sync)")
    hosts = sorted({w.host for w in workers})
    return Check("hold", True, f"{len(workers)} router worker(s) on {', '.join(hosts[:5])}"
                               f"{' ...' if len(hosts) > 5 else ''} registered; each must confirm the hold")


def take(request: CutoverRequest, policy: CutoverPolicy, declared: Backend, cutover_id: int | None,
         say: Say) -> Hold | None:
    """Hold the tenant's writes at every alive router worker (None: the hold check was overridden
    and no worker is registered). Raises CutoverStopped, the hold released, when one does not confirm."""
    r = request
    assert r.state_url is not None  # the preflight's hold check passes only with one (or is overridden)
    store = HoldStore(r.state_url, r.state_schema)
    if not store.alive_workers():
        say("hold: none (no router worker is registered; the hold check was overridden)")
        return None
    hold = store.create(r.slug, policy.hold_s, cutover_id)
    missing: list[RouterWorker] = []
    try:
        with store.connect() as conn:
            deadline = hold.started_s + hold.hold_s * (1 - FLIP_SHARE)
            while missing := store.unconfirmed(conn, hold):
                if time.monotonic() > deadline:
                    break
                time.sleep(CONFIRM_POLL_S)
    except BaseException:
        store.release(r.slug, declared, hold.id)
        raise
    if missing:
        store.release(r.slug, declared, hold.id)
        names = "; ".join(str(w) for w in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CutoverStopped(
            f"hold: {len(missing)} router worker(s) did not confirm the hold of {r.slug}'s writes within "
            f"{hold.hold_s:g} s (cutover.hold_s): {names}. Nothing was flipped; the held writes went on to "
            f"{declared}. A worker that is stopped, or cannot reach the state database, cannot hold writes: see "
            f"its log, restart it (or stop it for good: it leaves the registry once it stopped polling), then "
            f"run the same command again.")
    say(f"hold: every router worker ({len(store.alive_workers())}) holds {r.slug}'s writes, confirmed in "
        f"{hold.elapsed_s():.3f} s (reads flow; at most {hold.hold_s:g} s)")
    return hold


def within_bound(request: CutoverRequest, hold: Hold | None, declared: Backend) -> None:
    """Before the flip: enough of the hold is left for it, or the cutover aborts (the driver then
    releases the hold to `declared`)."""
    if hold is None:
        return
    r, elapsed = request, hold.elapsed_s()
    if elapsed <= hold.hold_s * (1 - FLIP_SHARE):
        return
    raise CutoverStopped(
        f"hold: the final sync ended {elapsed:.2f} s into the {hold.hold_s:g} s hold (cutover.hold_s), too late "
        f"to flip within it. Nothing was flipped; the held writes went on to {declared}. Run `{command_path()} "
        f"cutover {r.slug} --to {r.to}` again (its bulk sync carries the orders taken meanwhile, so the final "
        f"sync has less to do), or raise cutover.hold_s in {r.config_path}.")


def release(request: CutoverRequest, hold: Hold | None, to: Backend, say: Say) -> float | None:
    """Release the tenant's open hold (this run's, or one an earlier run left) to `to`; how long it
    held, when this run took it."""
    r = request
    if not r.state_url:
        return None
    released = HoldStore(r.state_url, r.state_schema).release(r.slug, to)
    held_s = hold.elapsed_s() if hold is not None and hold.id in released else None
    if released:
        say(f"release: the held writes of {r.slug} go on to {to} in arrival order" + (
            f" (held {held_s:.3f} s)" if held_s is not None else ""))
    else:
        say(f"release: no hold of {r.slug} was open" + (" (it ended on the routers' clocks)" if hold else ""))
    return held_s


def release_on_stop(request: CutoverRequest, to: Backend, say: Say) -> None:
    """The cutover stopped or was interrupted: a hold of the tenant still open is released to `to`
    (where the routing file sends the tenant now) rather than left to expire. Best effort: the
    routers end it on their own clocks anyway."""
    r = request
    if not r.state_url:
        return
    try:
        released = HoldStore(r.state_url, r.state_schema).release(r.slug, to)
    except psycopg.Error as exc:
        say(f"release: could not release the hold of {r.slug} ({type(exc).__name__}); the routers end it on "
            "their own within cutover.hold_s")
        return
    if released:
        say(f"release: the held writes of {r.slug} go on to {to} (the cutover stopped)")

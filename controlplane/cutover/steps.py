"""What a cutover does once its preflight passed: sync v1's orders into v2, wait until every router
serves the new backend, start or end the soak, and record it all (the write hold around the final
sync and the flip: hold.py). Each step says what it did."""

from __future__ import annotations

import shlex
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from controlplane.config import load_config
from controlplane.config.model import CutoverPolicy, RoutingConfig
from controlplane.cutover.probe import router_serves
from controlplane.cutover.request import CutoverRequest, CutoverStopped, Say
from controlplane.invocation import command_path
from controlplane.progress import ProgressDisplay
from controlplane.reverse import cutover as reverse_sync
from controlplane.state.events import EventKind, EventStore

if TYPE_CHECKING:
    from controlplane.evidence import EvidenceCheck

NO_ROUTER_WAIT_S: Final = 2.5  # routers poll the file every 0.5 s; without their addresses, wait this long
ROUTER_CONFIRMATIONS: Final = 5


def sync(request: CutoverRequest, label: str, say: Say, evidence: EvidenceCheck | None = None) -> tuple[bool, int]:
    """(clean, rows inserted or updated). `evidence`: one for every sync of a cutover, so that a claim
    an earlier sync judged is not asked of Midtrans again (above all under the write hold)."""
    from controlplane.migrate import detail_lines, migrate

    r = request
    if r.v1 is None or not r.database_url:
        say(f"{label}: skipped (no --from/--database-url; the migration check was overridden)")
        return True, 0
    report = migrate(r.v1, r.database_url, r.slug, r.layout.schema, evidence=evidence)
    say(f"{label}: {report.read} v1 orders, {report.inserted} inserted, {report.updated} updated, "
        f"{report.kept_newer} newer on v2 kept, {len(report.bad)} bad, {len(report.differences)} different")
    # Claims without evidence are reported, not a stop: a forged v1 row must not block a cutover.
    for line in detail_lines(report):
        say(line)
    return report.clean and not report.bad, report.inserted + report.updated


def wait_for_routers(request: CutoverRequest, policy: CutoverPolicy, say: Say) -> None:
    r = request
    if not r.router_admin_urls:
        time.sleep(NO_ROUTER_WAIT_S)
        say(f"routers: none given (--router-admin-url); waited {NO_ROUTER_WAIT_S:g} s for them to re-read "
            "the file")
        return
    progress = ProgressDisplay(sys.stderr, unit="routers")
    try:
        _confirm_routers(r, policy, say, progress)
    except KeyboardInterrupt:
        progress.close(interrupted=True)
        raise
    finally:
        progress.close()  # ends the progress line (nothing more once an interrupted close ended it)


def _confirm_routers(r: CutoverRequest, policy: CutoverPolicy, say: Say, progress: ProgressDisplay) -> None:
    deadline = time.monotonic() + policy.router_wait_s
    pending = list(r.router_admin_urls)
    # A router's workers share its admin port, and each answers for itself: several answers
    # in a row, each on a new connection, stand for all of them.
    streak = dict.fromkeys(pending, 0)
    problems = dict.fromkeys(pending, "")
    phase = f"routers: waiting for {r.slug} on {r.to}"
    while pending:
        progress(phase, len(r.router_admin_urls) - len(pending), len(r.router_admin_urls))
        for url in list(pending):
            backend, problem = router_serves(url, r.slug)
            if backend is not None and backend != r.to:
                problem = f"still serves {r.slug} from {backend}"
            streak[url] = streak[url] + 1 if backend == r.to else 0
            if problem and problem != problems[url]:
                say(f"routers: {url}: {problem}; waiting (up to {policy.router_wait_s:g} s)")
            problems[url] = problem
            if streak[url] >= ROUTER_CONFIRMATIONS:
                pending.remove(url)
                say(f"routers: {url} serves {r.slug} from {r.to} ({ROUTER_CONFIRMATIONS} answers in a row)")
        if pending and time.monotonic() > deadline:
            causes = "; ".join(f"{url}: {problems[url] or 'not yet confirmed'}" for url in pending)
            raise CutoverStopped(
                f"the routing file is flipped, but not every router served {r.slug} from {r.to} within "
                f"{policy.router_wait_s:g} s ({causes}). A router that answers but serves the old backend: see "
                f"its /routes (last_reload.issues) and `{command_path()} rollout status` (a rollback lock "
                "overrides the file). Re-run this command once they do: it is safe to repeat.")
        if pending:
            time.sleep(0.05)


def release_stale_locks(request: CutoverRequest, say: Say) -> None:
    from controlplane.state.locks import LockStore

    if not request.state_url:
        return
    config = load_config(request.config_path)
    for tenant in LockStore(request.state_url, request.state_schema).release_stale(config, request.actor):
        say(f"rollback lock of {tenant} released: its routing entry changed")


def start_soak(request: CutoverRequest, config: RoutingConfig, say: Say, *, only_if_missing: bool) -> None:
    from controlplane.rollout.decide import Memory
    from controlplane.state.rollouts import Phase, RolloutStore

    r = request
    if not r.state_url:
        say("soak: the decider starts it on its next pass (no --state-database-url here)")
        return
    store = RolloutStore(r.state_url, r.state_schema)
    current = store.rollouts().get(r.slug)
    if only_if_missing and current is not None and current.phase is not Phase.ROLLED_BACK:
        say(f"soak: already {current.phase.replace('_', ' ')} since {current.soak_started_at:%Y-%m-%d %H:%M} "
            "UTC; left as it is")
        return
    store.save(r.slug, Phase.SOAKING, datetime.now(UTC), Memory())
    hours = config.rollout_policy(r.slug).soak_s / 3600
    say(f"soak: started; the decider promotes {r.slug} after {hours:g} clean hours or rolls it back")


def end_rollout(request: CutoverRequest, say: Say) -> None:
    from controlplane.state.rollouts import Phase, RolloutStore

    r = request
    if not r.state_url:
        return
    store = RolloutStore(r.state_url, r.state_schema)
    current = store.rollouts().get(r.slug)
    if current is not None and current.phase is not Phase.ROLLED_BACK and store.set_phase(
            r.slug, Phase.ROLLED_BACK, EventKind.CUTOVER, r.actor, r.reason or "cut over to v1"):
        say("rollout: marked rolled back (a later cutover to v2 starts a new soak)")


def record(request: CutoverRequest, kind: EventKind, detail: dict[str, Any]) -> None:
    """The cutover's own record in the state database (with the reason of any override)."""
    r = request
    if not r.state_url:
        return
    if r.reason:
        detail = {**detail, "reason": r.reason}
    EventStore(r.state_url, r.state_schema).record(r.slug, kind, r.actor, detail)


def next_steps(request: CutoverRequest, say: Say) -> None:
    r, dualstack = request, command_path()
    say("next:")
    if not r.skip_nginx:
        say(f"  {dualstack} nginx apply --config {r.config_path} --dir ...   (nginx's fallback for {r.slug} "
            f"is now {r.to})")
    if r.to == "v2":
        store = shlex.quote(r.v1.argument) if r.v1 is not None else "V1STORE"
        say(f"  keep `{dualstack} migrate --from {store} --follow --tenant {r.slug}` running until the soak "
            f"ends (v1 -> v2; systemd: dualstack-migrate-follow@{r.slug}): orders v1 takes while a rollback "
            "pins the tenant there also reach v2")
        say(f"  {dualstack} rollout explain {r.slug}   (the soak's decisions)")
    say(reverse_sync.next_step(r))

"""`dualstack cutover SLUG --to v2|v1`: move one tenant, guarded, and say what happened at each step.

To v2: preflight (v2 healthy for the tenant; the tenant present, active, with a key that fits its
environment; v1's orders migrate clean; enough shadow comparisons matched; nginx renders and tests
clean), then a final sync, v2's grace window for notifications of orders it does not know yet, the
flip in the routing file (comments and formatting kept), every router confirming it serves v2,
catch-up syncs for orders v1 took meanwhile (repeated until one changes nothing), and the soak of
the rollout decision.

To v1 (the way back): v1 healthy and nginx clean, then the flip and the routers' confirmation.
Nothing needs copying back: orders created on v2 stay readable through the router (an order the
serving backend does not know is read from the other) and their notifications still reach v2
(`webhooks: both`).

A failed check stops the cutover before anything changes, unless that check is overridden with a
reason, which is recorded in the state database with the checks themselves.
"""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from controlplane.config import load_config
from controlplane.config.edit import set_backend
from controlplane.config.model import Backend, RoutingConfig
from controlplane.db.layout import DatabaseLayout
from controlplane.errors import UsageProblem
from controlplane.shadow.samples import STATE_SCHEMA

CHECKS: Final = ("health", "tenant", "migration", "shadow", "handover", "nginx")
NO_ROUTER_WAIT_S: Final = 2.5  # routers poll the file every 0.5 s; without their addresses, wait this long
CATCH_UP_PASSES: Final = 10
ROUTER_CONFIRMATIONS: Final = 5
CATCH_UP_PAUSE_S: Final = 1.0  # lets notifications answered by v1 during a pass finish first


class CutoverStopped(Exception):
    """The cutover stopped; the message says where, and whether anything had changed."""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    override: str | None = None  # the recorded reason, when a failed check was overridden

    @property
    def passes(self) -> bool:
        return self.ok or self.override is not None


@dataclass
class CutoverRequest:
    config_path: Path
    slug: str
    to: Backend
    admin_url: str | None = None  # v2's administration (tenant checks, grace window)
    database_url: str | None = None  # v2's application role (the migration)
    sqlite: Path | None = None  # v1's orders.db
    state_url: str | None = None  # the control plane's state (shadow results, rollouts, the record)
    layout: DatabaseLayout = field(default_factory=DatabaseLayout)
    state_schema: str = STATE_SCHEMA
    router_admin_urls: Sequence[str] = ()
    overrides: Sequence[str] = ()
    reason: str | None = None
    skip_nginx: bool = False
    actor: str = "unknown"


Say = Callable[[str], None]


def _get_json(url: str, timeout_s: float = 3.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"null")
        except ValueError:
            return error.code, None
    except ValueError:
        return 200, None


class Cutover:
    def __init__(self, request: CutoverRequest, say: Say = print) -> None:
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

    # -- preflight -------------------------------------------------------------------------------

    def preflight(self) -> list[Check]:
        r = self.request
        checks = [self._health()]
        if r.to == "v2":
            checks += [self._tenant(), self._migration(), self._shadow()]
        checks += [self._handover(), self._nginx()]
        for check in checks:
            if not check.ok and check.name in r.overrides:
                check.override = r.reason
            mark = "ok  " if check.ok else ("OVERRIDDEN" if check.override else "FAIL")
            self.say(f"  [{mark}] {check.name}: {check.detail}" + (f" (override: {check.override})"
                                                                    if check.override else ""))
        return checks

    def _health(self) -> Check:
        r = self.request
        base = self.config.upstreams[r.to].url
        url = f"{base}/health" + (f"?tenant={urllib.parse.quote(r.slug)}" if r.to == "v2" else "")
        try:
            status, body = _get_json(url)
        except (urllib.error.URLError, OSError) as exc:
            return Check("health", False, f"{r.to} at {base} does not answer ({getattr(exc, 'reason', exc)})")
        if status != 200:
            return Check("health", False, f"{r.to} answers {status} at {url}: {json.dumps(body)[:200]}")
        if r.to == "v2" and (not isinstance(body, dict) or body.get("tenant") != r.slug):
            return Check("health", False, f"v2 is up but does not know tenant '{r.slug}' ({json.dumps(body)[:200]})")
        return Check("health", True, f"{r.to} healthy at {base}")

    def _tenant(self) -> Check:
        from controlplane.db.tenants import TenantAdmin

        r = self.request
        if not r.admin_url:
            return Check("tenant", False, "cannot check the tenant's v2 row: pass --admin-url (or set "
                                          "DUALSTACK_ADMIN_URL)")
        problem = TenantAdmin(r.admin_url, r.layout).readiness(r.slug)
        return Check("tenant", problem is None, problem or "present in v2, active, server key fits its environment")

    def _migration(self) -> Check:
        from controlplane.migrate_sqlite import MigrationProblem, migrate_sqlite

        r = self.request
        if r.sqlite is None or not r.database_url:
            return Check("migration", False, "cannot verify v1's orders in v2: pass --sqlite and --database-url")
        try:
            report = migrate_sqlite(r.sqlite, r.database_url, r.slug, r.layout.schema, dry_run=True)
        except (MigrationProblem, psycopg.Error) as exc:
            return Check("migration", False, str(exc).strip().splitlines()[0])
        detail = (f"{report.read} v1 orders: {report.inserted} to insert, {report.updated} to update, "
                  f"{len(report.bad)} bad, {len(report.differences)} different")
        if report.bad:
            detail += " - bad: " + ", ".join(f"{order} ({why})" for order, why in report.bad[:5])
        if report.differences:
            detail += " - different: " + ", ".join(f"{order} ({what})" for order, what in report.differences[:5])
        return Check("migration", report.clean and not report.bad, detail)

    def _shadow(self) -> Check:
        from controlplane.rollout.stats import wilson

        r, policy = self.request, self.policy
        if not r.state_url:
            if policy.min_comparisons == 0:
                return Check("shadow", True, "no state database; none required (cutover.min_comparisons: 0)")
            return Check("shadow", False, "cannot read shadow results: pass --state-database-url")
        since = datetime.now(UTC) - timedelta(seconds=policy.shadow_window_s)
        with psycopg.connect(r.state_url) as conn:
            row = conn.execute(sql.SQL(
                "SELECT coalesce(sum(matches), 0), coalesce(sum(mismatches), 0) FROM {}.shadow_counts "
                "WHERE tenant = %s AND minute >= %s").format(sql.Identifier(r.state_schema)),
                (r.slug, since)).fetchone()
        matches, mismatches = (int(row[0]), int(row[1])) if row else (0, 0)
        total = matches + mismatches
        hours = policy.shadow_window_s / 3600
        if total < policy.min_comparisons:
            return Check("shadow", False, f"{total} comparisons in the last {hours:g} h, fewer than the "
                                          f"{policy.min_comparisons} required (cutover.min_comparisons)")
        if total == 0:
            return Check("shadow", True, "no comparisons; none required")
        rate = matches / total
        low, high = wilson(matches, total)
        detail = (f"{rate:.2%} matched (95% CI {low:.2%}-{high:.2%}) over {total} comparisons in the last "
                  f"{hours:g} h; required {policy.min_match_rate:.2%}")
        return Check("shadow", rate >= policy.min_match_rate, detail)

    def _handover(self) -> Check:
        slug = self.request.slug
        if self.config.tenants[slug].via == "direct":
            return Check("handover", False, f"nginx sends {slug} straight to its backend (via: direct): the flip "
                                            "would wait for `dualstack nginx apply`, and orders in flight across "
                                            "it would not be looked after. Set `via: router` for the move")
        if self.request.to == "v1":
            return Check("handover", True, "orders taken on v2 stay readable through the router, and their "
                                           "notifications still reach v2")
        if slug in self.config.v1_tenants:
            return Check("handover", True, f"v1 holds {slug}'s orders (upstreams.v1.tenants): the router reads them "
                                           "there, and copies their notifications to it, after the flip")
        return Check("handover", False, f"{slug} is not in upstreams.v1.tenants: after the flip, orders v1 took "
                                        "just before it could not be read through the router. Add it (v1's "
                                        "database holds its orders)")

    def _nginx(self) -> Check:
        from controlplane.render.apply import NginxFailure, check
        from controlplane.render.nginx import RenderError

        if self.request.skip_nginx:
            return Check("nginx", True, "not checked (--no-nginx: nginx is not in front of this router)")
        try:
            rendering = check(self._flipped())
        except (NginxFailure, RenderError) as exc:
            return Check("nginx", False, str(exc).strip().splitlines()[-1] if str(exc).strip() else "nginx -t failed")
        except FileNotFoundError as exc:
            return Check("nginx", False, f"nginx is not installed here ({exc})")
        return Check("nginx", True, f"{len(rendering.files)} include files render and pass nginx -t")

    def _flipped(self) -> RoutingConfig:
        tenants = dict(self.config.tenants)
        tenants[self.request.slug] = dataclasses.replace(tenants[self.request.slug], backend=self.request.to)
        return dataclasses.replace(self.config, tenants=tenants)

    # -- the move --------------------------------------------------------------------------------

    def run(self) -> bool:
        """Preflight and, if it passes, the move. True when every step finished clean."""
        r = self.request
        declared = self.config.tenants[r.slug].backend
        if declared == r.to:
            # An earlier run flipped the file and stopped (a router slow to confirm): finish its work.
            self.say(f"{r.slug} is already declared on {r.to} in {r.config_path}: checking the steps after "
                     "the flip")
            return self._after_flip(resumed=True)
        self.say(f"cutover of {r.slug}: {declared} -> {r.to}")
        self.say("preflight:")
        checks = self.preflight()
        failed = [c.name for c in checks if not c.passes]
        if failed:
            raise CutoverStopped(f"preflight failed ({', '.join(failed)}); nothing was changed. Fix it, or "
                                 "override a check with --override NAME --reason TEXT")
        self._record("cutover_started", {"from": declared, "to": r.to,
                                         "checks": [dataclasses.asdict(c) for c in checks]})
        clean = True
        if r.to == "v2":
            synced = self._sync("final sync")[0]
            if not synced and "migration" not in r.overrides:
                raise CutoverStopped("the final sync found rows that did not migrate clean (above) although the "
                                     "preflight passed; nothing was flipped (v2 keeps what it synced, which is "
                                     "harmless). Look at those rows, then run the cutover again")
            clean &= synced
            self._grace_window()
        set_backend(r.config_path, r.slug, r.to)
        self.say(f"flipped: {r.config_path} now declares {r.slug} on {r.to} (comments and layout kept)")
        return self._after_flip(resumed=False) and clean

    def _after_flip(self, *, resumed: bool) -> bool:
        r = self.request
        self._release_stale_locks()
        self._wait_for_routers()
        clean = True
        if r.to == "v2":
            clean = self._catch_up()
            self._start_soak(only_if_missing=resumed)
        else:
            self._end_rollout()
        self._record("cutover_done", {"to": r.to, "clean": clean, "resumed": resumed})
        self.say(f"done: {r.slug} is served by {r.to}." + (
            "" if clean else " Some sync step was not clean (above): look at those orders."))
        self._next_steps()
        return clean

    def _catch_up(self) -> bool:
        """Sync until a pass changes nothing.

        A pass reads v1, then writes v2. A notification for an order v1 took just before the flip
        can reach v2 between the two (v2 does not know the order yet, v1 applies it): the order
        lands in v2 with the status read before. The next pass, a moment later, carries the new
        one; once a pass inserts and updates nothing, every order v1 took is in v2 and v2 applies
        their notifications itself. (`migrate sqlite --follow` keeps running as the safety net.)"""
        clean = True
        for attempt in range(1, CATCH_UP_PASSES + 1):
            clean, changed = self._sync(f"catch-up sync {attempt}")
            if not changed or not clean:
                break
            time.sleep(CATCH_UP_PAUSE_S)
        return clean

    def _sync(self, label: str) -> tuple[bool, int]:
        """(clean, rows inserted or updated)"""
        from controlplane.migrate_sqlite import migrate_sqlite

        r = self.request
        if r.sqlite is None or not r.database_url:
            self.say(f"{label}: skipped (no --sqlite/--database-url; the migration check was overridden)")
            return True, 0
        report = migrate_sqlite(r.sqlite, r.database_url, r.slug, r.layout.schema)
        self.say(f"{label}: {report.read} v1 orders, {report.inserted} inserted, {report.updated} updated, "
                 f"{report.kept_newer} newer on v2 kept, {len(report.bad)} bad, {len(report.differences)} different")
        for order_id, why in report.bad:
            self.say(f"  bad row {order_id}: {why} (not migrated)")
        for order_id, what in report.differences:
            self.say(f"  difference {order_id}: {what}")
        return report.clean and not report.bad, report.inserted + report.updated

    def _grace_window(self) -> None:
        from controlplane.db.tenants import TenantAdmin

        r, minutes = self.request, self.policy.grace_minutes
        if not r.admin_url or minutes <= 0:
            self.say("grace window: not opened (no --admin-url, or cutover.grace_minutes: 0)")
            return
        TenantAdmin(r.admin_url, r.layout).open_grace_window(r.slug, minutes)
        self.say(f"grace window: for {minutes:g} min, v2 answers notifications for orders it does not know yet "
                 "with 503 (Midtrans retries) while the router also delivers them to v1")

    def _wait_for_routers(self) -> None:
        r = self.request
        if not r.router_admin_urls:
            time.sleep(NO_ROUTER_WAIT_S)
            self.say(f"routers: none given (--router-admin-url); waited {NO_ROUTER_WAIT_S:g} s for them to re-read "
                     "the file")
            return
        deadline = time.monotonic() + self.policy.router_wait_s
        pending = list(r.router_admin_urls)
        # A router's workers share its admin port, and each answers for itself: several answers
        # in a row, each on a new connection, stand for all of them.
        streak = dict.fromkeys(pending, 0)
        while pending:
            for url in list(pending):
                streak[url] = streak[url] + 1 if self._router_serves(url) == r.to else 0
                if streak[url] >= ROUTER_CONFIRMATIONS:
                    pending.remove(url)
                    self.say(f"routers: {url} serves {r.slug} from {r.to} ({ROUTER_CONFIRMATIONS} answers in a row)")
            if pending and time.monotonic() > deadline:
                raise CutoverStopped(
                    f"the routing file is flipped, but {', '.join(pending)} did not serve {r.slug} from {r.to} "
                    f"within {self.policy.router_wait_s:g} s: see their /routes (last_reload.issues) and "
                    f"`dualstack rollout status` (a rollback lock overrides the file). Re-run this command "
                    "once they do: it is safe to repeat.")
            if pending:
                time.sleep(0.05)

    def _router_serves(self, admin_url: str) -> str | None:
        try:
            status, body = _get_json(f"{admin_url.rstrip('/')}/routes")
        except (urllib.error.URLError, OSError):
            return None
        tenant = body.get("tenants", {}).get(self.request.slug) if status == 200 and isinstance(body, dict) else None
        return tenant.get("backend") if isinstance(tenant, dict) else None

    def _release_stale_locks(self) -> None:
        from controlplane.rollout.locks import LockStore

        if not self.request.state_url:
            return
        config = load_config(self.request.config_path)
        for tenant in LockStore(self.request.state_url, self.request.state_schema).release_stale(
                config, self.request.actor):
            self.say(f"rollback lock of {tenant} released: its routing entry changed")

    def _start_soak(self, *, only_if_missing: bool) -> None:
        from controlplane.rollout.decide import Memory
        from controlplane.rollout.decider import RolloutStore

        r = self.request
        if not r.state_url:
            self.say("soak: the decider starts it on its next pass (no --state-database-url here)")
            return
        store = RolloutStore(r.state_url, r.state_schema)
        current = store.rollouts().get(r.slug)
        if only_if_missing and current is not None and current.phase != "rolled_back":
            self.say(f"soak: already {current.phase.replace('_', ' ')} since {current.soak_started_at:%Y-%m-%d %H:%M} "
                     "UTC; left as it is")
            return
        store.save(r.slug, "soaking", datetime.now(UTC), Memory())
        hours = self.config.rollout_policy(r.slug).soak_s / 3600
        self.say(f"soak: started; the decider promotes {r.slug} after {hours:g} clean hours or rolls it back")

    def _end_rollout(self) -> None:
        from controlplane.rollout.decider import RolloutStore

        r = self.request
        if not r.state_url:
            return
        store = RolloutStore(r.state_url, r.state_schema)
        current = store.rollouts().get(r.slug)
        if current is not None and current.phase != "rolled_back" and store.set_phase(
                r.slug, "rolled_back", "cutover", r.actor, r.reason or "cut over to v1"):
            self.say("rollout: marked rolled back (a later cutover to v2 starts a new soak)")

    def _record(self, kind: str, detail: dict[str, Any]) -> None:
        r = self.request
        if not r.state_url:
            return
        if r.reason:
            detail = {**detail, "reason": r.reason}
        with psycopg.connect(r.state_url) as conn:
            conn.execute(sql.SQL("INSERT INTO {}.rollout_events (tenant, kind, actor, detail) VALUES (%s, %s, %s, %s)")
                         .format(sql.Identifier(r.state_schema)), (r.slug, kind, r.actor, Jsonb(detail)))

    def _next_steps(self) -> None:
        r = self.request
        self.say("next:")
        self.say(f"  dualstack nginx apply --config {r.config_path} --dir ...   (nginx's fallback for {r.slug} "
                 f"is now {r.to})")
        if r.to == "v2":
            self.say(f"  keep `dualstack migrate sqlite --follow --tenant {r.slug} ...` running until the soak "
                     "ends: orders v1 takes while a rollback pins the tenant there also reach v2")
            self.say(f"  dualstack rollout explain {r.slug}   (the soak's decisions)")

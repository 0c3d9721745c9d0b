"""The checks before a cutover moves anything: each answers ok or not, with the detail that says why.

To v2: health, tenant, migration, shadow, handover, nginx, hold; to v1: health, handover, nginx, hold,
reverse_sync (controlplane/reverse/cutover.py: v1 holds every order v2 took). A failed
check named in the request's overrides passes with the recorded reason.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import psycopg

from controlplane.config.model import CutoverPolicy, RoutingConfig
from controlplane.cutover.hold import holders
from controlplane.cutover.probe import backend_health
from controlplane.cutover.request import Check, CutoverRequest, Say
from controlplane.errors import first_line
from controlplane.reverse import cutover as reverse_sync
from controlplane.shadow.matchrate import MatchRate
from controlplane.state import shadow_samples, v1_orders_seen

if TYPE_CHECKING:
    from controlplane.migrate import V1Store


def preflight(request: CutoverRequest, config: RoutingConfig, say: Say) -> list[Check]:
    checks = [health(request, config)]
    if request.to == "v2":
        checks += [tenant(request), migration(request), shadow(request, config.cutover)]
    checks += [handover(request, config), nginx(request, config), holders(request)]
    if request.to == "v1":  # last, once the cheap checks passed: it makes last reverse passes
        checks.append(reverse_sync.check(request, config.cutover, config.upstreams["v2"]))
    for check in checks:
        if not check.ok and check.name in request.overrides and not check.binding:
            check.override = request.reason
        mark = "ok  " if check.ok else ("OVERRIDDEN" if check.override else "FAIL")
        say(f"  [{mark}] {check.name}: {check.detail}" + (f" (override: {check.override})"
                                                          if check.override else ""))
    return checks


def health(request: CutoverRequest, config: RoutingConfig) -> Check:
    """The target backend answers its health check as the routing file declares it (`upstreams.<name>.health`)."""
    return Check("health", *backend_health(config.upstreams[request.to], request.slug))


def tenant(request: CutoverRequest) -> Check:
    from controlplane.db.tenants import TenantAdmin

    r = request
    if not r.admin_url:
        return Check("tenant", False, "cannot check the tenant's v2 row: pass --admin-url (or set "
                                      "DUALSTACK_ADMIN_URL)")
    problem = TenantAdmin(r.admin_url, r.layout).readiness(r.slug)
    return Check("tenant", problem is None, problem or "present in v2, active, server key fits its environment")


def migration(request: CutoverRequest) -> Check:
    from controlplane.migrate import MigrationProblem, migrate

    r = request
    if r.v1 is None or not r.database_url:
        return Check("migration", False, "cannot verify v1's orders in v2: pass --from (v1's store) and "
                                         "--database-url")
    try:
        report = migrate(r.v1, r.database_url, r.slug, r.layout.schema, dry_run=True)
        if report.read == 0:  # v1's PostgreSQL generation leaves an empty orders.db next to it
            return Check("migration", False, f"v1 store has 0 orders ({r.v1.name}): is this the store v1 "
                                             "writes? (--from sqlite:PATH or --from postgresql://...)")
        holds_seen, seen_detail = orders_v1_took(r, r.v1)
    except (MigrationProblem, psycopg.Error) as exc:
        return Check("migration", False, first_line(exc))
    if not holds_seen:
        return Check("migration", False, seen_detail)
    detail = (f"{report.read} v1 orders: {report.inserted} to insert, {report.updated} to update, "
              f"{len(report.bad)} bad, {len(report.differences)} different; {seen_detail}")
    if report.bad:
        detail += " - bad: " + ", ".join(f"{order} ({why})" for order, why in report.bad[:5])
    if report.differences:
        detail += " - different: " + ", ".join(f"{order} ({what})" for order, what in report.differences[:5])
    return Check("migration", report.clean and not report.bad, detail)


def orders_v1_took(request: CutoverRequest, store: V1Store) -> tuple[bool, str]:
    """Whether the store holds the orders the router recently saw v1 create or answer for
    (controlplane/state/v1_orders_seen.py), and what to say about it."""
    if not request.state_url:
        return True, "orders the router saw v1 take: not checked (no --state-database-url)"
    with psycopg.connect(request.state_url) as conn:
        seen = v1_orders_seen.recent(conn, request.state_schema, request.slug)
    held = store.held(seen) if seen else set()
    missing = [order_id for order_id in seen if order_id not in held]  # newest first
    hours = f"{v1_orders_seen.SEEN_WINDOW_S / 3600:g} h"
    if not missing:
        return True, f"it holds the {len(seen)} orders the router saw v1 take in the last {hours}"
    kinds = {seen[order_id] for order_id in missing}
    took = "create" if kinds == {"created"} else "answer for" if kinds == {"answered"} else "create or answer for"
    return False, (f"the store you gave ({store.name}) lacks {len(missing)} orders the router saw v1 {took} in "
                   f"the last {hours}, e.g. {', '.join(missing[:5])}: is this the store v1 writes? "
                   "(--from sqlite:PATH or --from postgresql://...)")


def shadow(request: CutoverRequest, policy: CutoverPolicy) -> Check:
    r = request
    if not r.state_url:
        if policy.min_comparisons == 0:
            return Check("shadow", True, "no state database; none required (cutover.min_comparisons: 0)")
        return Check("shadow", False, "cannot read shadow results: pass --state-database-url")
    until = datetime.now(UTC)
    with psycopg.connect(r.state_url) as conn:
        rates = shadow_samples.endpoint_rates(conn, r.state_schema, r.slug, until - timedelta(
            seconds=policy.shadow_window_s), until)
    return shadow_gate(MatchRate.total(rates.values()), policy)


def shadow_gate(rate: MatchRate, policy: CutoverPolicy) -> Check:
    """The shadow check on the window's match rate (controlplane/shadow/matchrate.py): enough
    comparisons that matched or not, and enough of them matched."""
    judged, hours = rate.judged, policy.shadow_window_s / 3600
    if judged < policy.min_comparisons:
        return Check("shadow", False, f"{judged} comparisons in the last {hours:g} h, fewer than the "
                                      f"{policy.min_comparisons} required (cutover.min_comparisons)")
    if judged == 0:
        return Check("shadow", True, "no comparisons; none required")
    low, high = rate.interval
    detail = (f"{rate.rate:.2%} matched (95% CI {low:.2%}-{high:.2%}) over {judged} comparisons in the last "
              f"{hours:g} h; required {policy.min_match_rate:.2%}")
    return Check("shadow", rate.rate >= policy.min_match_rate, detail)


def handover(request: CutoverRequest, config: RoutingConfig) -> Check:
    slug = request.slug
    if config.tenants[slug].via == "direct":
        return Check("handover", False, f"nginx sends {slug} straight to its backend (via: direct): the flip "
                                        "would wait for `dualstack nginx apply`, and orders in flight across "
                                        "it would not be looked after. Set `via: router` for the move")
    if request.to == "v1":
        refusal = config.v1_refusal(slug)
        if refusal is not None:
            return Check("handover", False, refusal + " (no override moves a tenant there)", binding=True)
        return Check("handover", True, "orders taken on v2 stay readable through the router, and their "
                                       "notifications still reach v2")
    if slug in config.v1_tenants:
        return Check("handover", True, f"v1 holds {slug}'s orders (upstreams.v1.tenants): the router reads them "
                                       "there, and copies their notifications to it, after the flip")
    return Check("handover", False, f"{slug} is not in upstreams.v1.tenants: after the flip, orders v1 took "
                                    "just before it could not be read through the router. Add it (v1's "
                                    "database holds its orders)")


def nginx(request: CutoverRequest, config: RoutingConfig) -> Check:
    from controlplane.render.nginx import RenderError
    from controlplane.render.nginx_check import NginxFailure, check

    if request.skip_nginx:
        return Check("nginx", True, "not checked (--no-nginx: nginx is not in front of this router)")
    try:
        rendering = check(flipped(config, request)).rendering
    except (NginxFailure, RenderError) as exc:
        return Check("nginx", False, str(exc).strip().splitlines()[-1] if str(exc).strip() else "nginx -t failed")
    except FileNotFoundError as exc:
        return Check("nginx", False, f"nginx is not installed here ({exc})")
    return Check("nginx", True, f"{len(rendering.files)} include files render and pass nginx -t")


def flipped(config: RoutingConfig, request: CutoverRequest) -> RoutingConfig:
    """The configuration as it will be once the tenant is declared on its new backend."""
    tenants = dict(config.tenants)
    tenants[request.slug] = dataclasses.replace(tenants[request.slug], backend=request.to)
    return dataclasses.replace(config, tenants=tenants)

"""The fleet view, built from gathered readings without any I/O: what needs attention comes first,
and each row says why its effective backend differs from the declared one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from controlplane.config import load_config_text
from controlplane.config.locks import Lock
from controlplane.shadow.matchrate import MatchRate
from controlplane.state.rollouts import DecisionRecord, FleetRollout, Phase
from controlplane.status.readings import Alert, Gathered, RouterRoutes, RouterTenant, Source, SourceKind, StateReadings
from controlplane.status.render import WIDTH, render_html, render_json, render_table
from controlplane.status.view import Attention, build_view

NOW = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
CONFIG = load_config_text("""\
upstreams:
  v1: {url: "http://127.0.0.1:3002", tenants: [rolled, lagging, steady, alerted, held, holding, soaking]}
  v2: {url: "http://127.0.0.1:3010"}
base_domain: agentbar.ai
tenants:
  nowayback: {backend: v2}
  alerted: {backend: v2}
  rolled: {backend: v2}
  held: {backend: v2}
  holding: {backend: v2}
  lagging: {backend: v1}
  soaking: {backend: v2, rollout: {soak_hours: 8}}
  steady: {backend: v1}
""")


def decision(action: str, reason: str) -> DecisionRecord:
    return DecisionRecord(NOW - timedelta(minutes=1), action, "inconclusive", False, [reason, "more"], [])


STATE = StateReadings(
    locks={"nowayback": Lock("nowayback", "v1", "v2", "v2 errors", "someone"),
           "rolled": Lock("rolled", "v1", "v2", "v2 error rate 5%", "decider")},
    rollouts={"nowayback": FleetRollout(Phase.SOAKING, NOW - timedelta(hours=1), None),
              "rolled": FleetRollout(Phase.ROLLED_BACK, NOW - timedelta(hours=2), decision("rollback", "errors")),
              "held": FleetRollout(Phase.HELD, NOW - timedelta(hours=4), None),
              "holding": FleetRollout(Phase.SOAKING, NOW - timedelta(hours=30), decision("hold", "no traffic")),
              "soaking": FleetRollout(Phase.SOAKING, NOW - timedelta(hours=2), decision("continue", "soaking"))},
    shadow={"steady": MatchRate(matches=990, mismatches=10, noise=5)},
)


def router(url: str, digest: str, **served: str) -> RouterRoutes:
    return RouterRoutes(url, 3, digest, {slug: RouterTenant(backend) for slug, backend in served.items()})


def gathered(*routers: RouterRoutes, alerts: tuple[Alert, ...] = ()) -> Gathered:
    return Gathered(NOW, CONFIG, STATE, routers, alerts,
                    (Source(SourceKind.ROUTING_FILE, "routing.yaml", True, "ok"),
                     Source(SourceKind.ROUTER, "http://127.0.0.1:1", False, "/routes: connection refused")))


EXPECTED = {"nowayback": "v2", "alerted": "v2", "rolled": "v1", "held": "v2", "holding": "v2", "lagging": "v1",
            "soaking": "v2", "steady": "v1"}


def test_rows_sort_by_what_needs_attention_and_say_why() -> None:
    current = router("http://r1:9100", CONFIG.digest, **EXPECTED)
    older = router("http://r2:9100", "old-digest", **{**EXPECTED, "lagging": "v2", "gone": "v2"})
    alert = Alert("DualstackV2Errors", "page", "alerted", "v2 answers errors", "2026-12-06T02:50:00Z")
    fleet = Alert("DualstackRouterDown", "page", None, "a router is down", "2026-12-06T02:55:00Z")
    view = build_view(gathered(current, older, alerts=(alert, fleet)))
    order = [(row.tenant, row.attention) for row in view.tenants]
    assert order == [
        ("nowayback", Attention.REFUSED_LOCK), ("alerted", Attention.ALERT), ("rolled", Attention.ROLLBACK),
        ("held", Attention.HELD), ("holding", Attention.HELD), ("gone", Attention.MISMATCH),
        ("lagging", Attention.MISMATCH), ("soaking", Attention.SOAKING), ("steady", Attention.STEADY)]
    rows = {row.tenant: row for row in view.tenants}
    assert rows["nowayback"].reasons[0].startswith("lock refused: ") and "v1 does not hold" in rows["nowayback"].reasons[0]
    assert rows["nowayback"].effective == "v2"  # the refused lock changes nothing
    assert rows["rolled"].effective == "v1" and rows["rolled"].reasons == ("rollback lock by decider: v2 error rate 5%",)
    assert rows["rolled"].soak is None and rows["rolled"].last_decision is not None
    assert rows["held"].reasons == ("held by ops: no automatic action (`dualstack rollout resume`)",)
    assert rows["holding"].reasons == ("decider holds: no traffic",)
    assert rows["lagging"].effective == "mixed" and rows["lagging"].reasons == (
        "http://r2:9100 serves v2, not v1: it runs another version of the routing file (generation 3)",)
    assert rows["gone"].declared is None and rows["gone"].reasons == ("not in the routing file; still routed by "
                                                                      "http://r2:9100",)
    assert rows["alerted"].reasons == ("alert DualstackV2Errors: v2 answers errors",)
    assert view.fleet_alerts == (fleet,)
    assert view.counts["held"] == 2 and not view.complete


def test_soak_progress_and_time_to_decision() -> None:
    rows = {row.tenant: row for row in build_view(gathered()).tenants}
    soak = rows["soaking"].soak  # its own 8 h window, 2 h in
    assert soak is not None and soak.progress == 0.25 and soak.remaining_s == 6 * 3600
    assert soak.decision_due_at == NOW + timedelta(hours=6)
    held = rows["held"].soak  # held: nothing is decided, so no time to a decision
    assert held is not None and held.remaining_s is None and held.decision_due_at is None
    # No router read: the effective backend is what the file and the locks say, and marked so.
    assert rows["rolled"].effective == "v1" and rows["rolled"].effective_from == "state"


def test_a_lock_a_router_refuses_is_shown_even_when_the_state_database_is_not_read() -> None:
    served = {**EXPECTED, "rolled": "v2"}
    refusing = RouterRoutes("http://r1:9100", 1, CONFIG.digest,
                            {**{s: RouterTenant(b) for s, b in served.items()},
                             "nowayback": RouterTenant("v2", "v1 does not hold nowayback's orders")})
    view = build_view(Gathered(NOW, CONFIG, None, (refusing,), ()))
    first = view.tenants[0]
    assert (first.tenant, first.attention, first.effective_from) == ("nowayback", Attention.REFUSED_LOCK, "routers")


def test_the_outputs_fit_and_carry_the_same_rows() -> None:
    long_router = router("http://a-router-with-a-very-long-name.example.internal:9100", "other",
                         **{**EXPECTED, "lagging": "v2"})
    view = build_view(gathered(long_router))
    table = render_table(view)
    header = table.splitlines()[2]
    rows = table.splitlines()[3:3 + len(view.tenants)]
    assert header.startswith("attention") and all(len(line) <= WIDTH for line in [header, *rows])
    assert [line.split()[1] for line in rows] == [row.tenant for row in view.tenants]
    assert "FAILED  router http://127.0.0.1:1: /routes: connection refused" in table
    data = json.loads(render_json(view))
    assert set(data) == {"generated_at", "complete", "counts", "shadow_window_s", "sources", "fleet_alerts", "tenants"}
    steady = next(t for t in data["tenants"] if t["tenant"] == "steady")
    assert set(steady) == {"tenant", "attention", "declared", "effective", "effective_from", "reasons", "phase", "soak",
                           "last_decision", "shadow", "lock", "alerts", "reverse_sync"}
    assert steady["shadow"]["match_rate"] == 0.99 and steady["shadow"]["noise"] == 5
    page = render_html(view)
    assert page.count('<tr class="') == len(view.tenants) and "default-src 'none'" in page

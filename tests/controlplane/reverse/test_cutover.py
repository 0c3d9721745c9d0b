"""Where the reverse sync meets a cutover: the `reverse_sync` check when v2's database is unreachable
(the record decides, and says what it covers), `cutover complete` and its refusals, and what `rollout
status` and `status` show of a running reverse sync."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controlplane.cli import ExitStatus, run
from controlplane.config.model import CutoverPolicy, UpstreamSpec
from controlplane.cutover.request import CutoverRequest
from controlplane.errors import UsageProblem
from controlplane.migrate import SqliteStore
from controlplane.reverse.cutover import check, complete, from_record
from controlplane.state.cutovers import CutoverStore, Outcome
from controlplane.state.reverse_syncs import ReverseSyncRecord, ReverseSyncStore
from standins.legacy_v1.stores import open_database
from tests.conftest import Database, free_port, routing_yaml
from tests.fixtures.v2_stack import Stack

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
POLICY = CutoverPolicy()  # reverse_sync_lag_s: 60
V2_GONE = "v2's database: connection refused"
V2_DOWN = (False, "v2 at http://127.0.0.1:9 does not answer ([Errno 111] Connection refused)")
V2_UP = (True, "v2 healthy at http://127.0.0.1:9 (GET /health -> 200)")


def nowhere() -> UpstreamSpec:
    """v2's service as the routing file declares it, with nothing listening there."""
    return UpstreamSpec("v2", f"http://127.0.0.1:{free_port()}")


def record(**changes: object) -> ReverseSyncRecord:
    """Caught up 3 s before v2's database went away at 09:59:40; the follower kept trying every 5 s."""
    caught = NOW - timedelta(seconds=23)
    base = ReverseSyncRecord("shop", "sqlite:/var/www/api/orders.db", NOW - timedelta(hours=2), "ops", caught,
                             caught + timedelta(seconds=1), 1.0, 120, NOW - timedelta(seconds=4), V2_GONE,
                             NOW - timedelta(seconds=20), "v2", None, None)
    return replace(base, **changes)  # type: ignore[arg-type]


def test_with_v2_unreachable_a_caught_up_follower_lets_the_way_back_go_on_and_says_what_it_covers() -> None:
    ok = from_record(record(), POLICY, V2_GONE, NOW, V2_DOWN)
    assert ok.ok, ok.detail
    assert ("going by the reverse sync's record: v1 holds everything v2 had up to 2026-12-06 09:59:37 UTC (its last "
            "clean pass, 1.0 s behind), and v2 stopped within 3 s of it") in ok.detail
    assert "v2 does not answer either (v2 at http://127.0.0.1:9 does not answer" in ok.detail
    assert "orders v2 took in those 3 s, if any, are not in v1" in ok.detail


def test_with_v2s_database_unreachable_for_hours_the_way_back_is_refused_although_the_follower_kept_trying() -> None:
    """A partition between the follower and v2's database for two hours: v2 may have taken orders all
    that time. The follower's record looks healthy (caught up when it last could, trying every 5 s)."""
    caught = NOW - timedelta(hours=2)
    partitioned = record(watermark=caught, last_pass_at=caught + timedelta(seconds=1),
                         failing_since=caught + timedelta(seconds=65))
    refused = from_record(partitioned, POLICY, V2_GONE, NOW, V2_DOWN)
    assert not refused.ok
    assert ("v1 holds v2's changes up to 2026-12-06 08:00:00 UTC (the last clean reverse pass), but v2's database "
            "answered no pass since 2026-12-06 08:01:05 UTC, 65 s later: more than cutover.reverse_sync_lag_s "
            "(60 s)") in refused.detail
    assert "--override reverse_sync --reason" in refused.detail
    # No failure recorded yet (the follower's last pass was clean, long ago): now is what counts.
    assert not from_record(record(failing_since=None, last_attempt_at=NOW - timedelta(seconds=2),
                                  watermark=caught), POLICY, V2_GONE, NOW, V2_DOWN).ok


def test_with_v2s_database_unreachable_but_v2_still_answering_the_way_back_is_refused() -> None:
    refused = from_record(record(), POLICY, V2_GONE, NOW, V2_UP)
    assert not refused.ok
    assert ("v2's service still answers (v2 healthy at http://127.0.0.1:9 (GET /health -> 200)) although its "
            "database cannot be reached from here: it may be taking orders v1 lacks") in refused.detail
    assert "Stop v2" in refused.detail and "--override reverse_sync --reason" in refused.detail


@pytest.mark.parametrize(("changes", "why"), [
    ({"lag_s": 300.0}, "the last clean reverse pass was 300 s behind v2, more than cutover.reverse_sync_lag_s (60 s)"),
    ({"failing_side": "v1", "last_error": "orders.db: busy"}, "failed writing v1 (orders.db: busy) while v2 may still"),
    ({"last_attempt_at": NOW - timedelta(minutes=30)}, "the follower has not tried since 2026-12-06 09:30:00 UTC"),
    ({"completed_at": NOW - timedelta(days=1), "completed_by": "ops"}, "the reverse sync was completed at"),
    ({"watermark": None, "lag_s": None}, "no reverse pass has finished yet"),
])
def test_with_v2_unreachable_any_doubt_refuses_the_way_back(changes: dict[str, object], why: str) -> None:
    refused = from_record(record(**changes), POLICY, V2_GONE, NOW, V2_DOWN)
    assert not refused.ok and refused.detail.startswith(V2_GONE) and why in refused.detail, refused.detail
    assert "no reverse sync is recorded" in from_record(None, POLICY, V2_GONE, NOW, V2_DOWN).detail


def test_the_check_reads_the_record_when_v2s_database_cannot_be_reached(state: Database, tmp_path: Path) -> None:
    slug = "r" + secrets.token_hex(3)
    orders_db = tmp_path / "orders.db"
    open_database(orders_db).close()
    store = ReverseSyncStore(state.control_url, state.layout.schema)
    store.begin(slug, f"sqlite:{orders_db}", "ops")
    caught = datetime.now(UTC) - timedelta(seconds=10)
    store.passed(slug, caught, 0.5, 3)
    gone = f"postgresql://postgres@127.0.0.1:{free_port()}/payments"  # v2's database: nothing listens
    request = CutoverRequest(config_path=tmp_path / "routing.yaml", slug=slug, to="v1", v1=SqliteStore(orders_db),
                             database_url=gone, state_url=state.control_url, state_schema=state.layout.schema)
    passed = check(request, POLICY, nowhere())
    assert passed.ok and f"v1 holds everything v2 had up to {caught:%Y-%m-%d %H:%M:%S} UTC" in passed.detail
    assert passed.detail.startswith("v2's database:"), passed.detail
    stored = store.get(slug)
    assert stored is not None and stored.rows_copied == 3  # the failed pass moved nothing
    store.failed(slug, "orders.db: database is locked", "v1")  # v1's side failed since: v2 may have taken orders
    assert not check(request, POLICY, nowhere()).ok


async def test_the_check_refuses_when_v2_answers_healthy_but_its_database_cannot_be_reached_from_here(
    stack: Stack, state: Database, tmp_path: Path
) -> None:
    """The real v2 answers its /health for the tenant (its own database is fine) while the database URL
    the reverse sync uses leads nowhere: v2 may be taking orders v1 lacks."""
    tenant = stack.add_tenant()
    orders_db = tmp_path / "orders.db"
    open_database(orders_db).close()
    store = ReverseSyncStore(state.control_url, state.layout.schema)
    store.begin(tenant.slug, f"sqlite:{orders_db}", "ops")
    store.passed(tenant.slug, datetime.now(UTC) - timedelta(seconds=5), 0.5, 3)
    gone = f"postgresql://postgres@127.0.0.1:{free_port()}/payments"
    request = CutoverRequest(config_path=tmp_path / "routing.yaml", slug=tenant.slug, to="v1",
                             v1=SqliteStore(orders_db), database_url=gone, state_url=state.control_url,
                             state_schema=state.layout.schema)
    v2 = UpstreamSpec("v2", stack.url)
    refused = await asyncio.to_thread(check, request, POLICY, v2)
    assert not refused.ok and f"v2's service still answers (v2 healthy at {stack.url}" in refused.detail, refused.detail


def test_cutover_complete_ends_the_reverse_path_once_a_cutover_to_v2_is_done(
    state: Database, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slug, schema = "c" + secrets.token_hex(3), state.layout.schema
    with pytest.raises(UsageProblem, match=f"no cutover of {slug} to v2 is done"):
        complete(state.control_url, schema, slug, "ops")
    cutovers, syncs = CutoverStore(state.control_url, schema), ReverseSyncStore(state.control_url, schema)
    cutover = cutovers.begin(slug, "v1", "v2", "ops")
    syncs.begin(slug, "sqlite:orders.db", "ops")
    with pytest.raises(UsageProblem, match=f"the cutover of {slug} to v2 .* has not finished"):
        complete(state.control_url, schema, slug, "ops")
    cutovers.end(cutover.id, Outcome.DONE)
    syncs.passed(slug, datetime.now(UTC) - timedelta(seconds=7), 0.2, 5)

    config = tmp_path / "routing.yaml"
    config.write_text(routing_yaml("http://127.0.0.1:1", "http://127.0.0.1:2", f"{slug}: {{backend: v2}}\n",
                                   v1_tenants=[slug]))
    assert run(["rollout", "status", "--config", str(config), "--state-database-url", state.control_url]) == 0
    shown = capsys.readouterr().out
    line = next(line for line in shown.splitlines() if line.startswith(slug) and " s " in line)
    assert "clean, 5 rows copied" in line and int(line.split()[1]) >= 7, shown
    assert run(["status", "--config", str(config), "--state-database-url", state.control_url, "--json"]) == 0
    row = next(t for t in json.loads(capsys.readouterr().out)["tenants"] if t["tenant"] == slug)
    assert row["reverse_sync"]["lag_s"] >= 7 and row["reverse_sync"]["rows_copied"] == 5
    assert any(reason.startswith("reverse sync running: v1 holds v2's changes up to") for reason in row["reasons"])

    assert run(["cutover", "complete", slug, "--state-database-url", state.control_url]) == ExitStatus.OK
    assert "reverse sync completed" in capsys.readouterr().out
    assert "already completed" in complete(state.control_url, schema, slug, "ops")
    assert run(["rollout", "status", "--config", str(config), "--state-database-url", state.control_url]) == 0
    shown = capsys.readouterr().out  # (other tests' tenants share this state database)
    assert not any(line.startswith(slug) and " s " in line for line in shown.splitlines())  # no longer running
    # The follower, started again by mistake, copies nothing and says why.
    orders_db = tmp_path / "orders.db"
    open_database(orders_db).close()
    assert run(["reverse-sync", "--from", f"sqlite:{orders_db}", "--tenant", slug, "--database-url",
                "postgresql://x@127.0.0.1:1/x", "--state-database-url", state.control_url]) == ExitStatus.OK
    assert f"reverse sync of {slug}: completed at" in capsys.readouterr().out


async def way_back_with_a_v1_row(stack: Stack, tmp_path: Path, order_id: str, v1_status: str) -> CutoverRequest:
    """A tenant with two pending orders on v2, `order_id` and FINE-1; v1's SQLite store holds only
    `order_id`, with `v1_status`: the way back's request."""
    tenant = stack.add_tenant()
    orders_db = tmp_path / "orders.db"
    open_database(orders_db).close()
    await stack.create(tenant, order_id, amount=1000)
    await stack.create(tenant, "FINE-1", amount=1000)
    with sqlite3.connect(orders_db) as v1:
        v1.execute("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                   "VALUES (?, 'Budi', 'b@example.com', '0812', 1000, 'midtrans', ?)", (order_id, v1_status))
    return CutoverRequest(config_path=tmp_path / "routing.yaml", slug=tenant.slug, to="v1",
                          v1=SqliteStore(orders_db), database_url=stack.database.app_url)


async def test_the_check_refuses_the_way_back_while_an_order_of_v2s_is_not_in_v1_as_final(
    stack: Stack, tmp_path: Path
) -> None:
    # v1's admin page stored a status v1 does not spell
    request = await way_back_with_a_v1_row(stack, tmp_path, "ODD-1", "shipped")
    refused = await asyncio.to_thread(check, request, POLICY, UpstreamSpec("v2", stack.url))
    assert not refused.ok, refused.detail
    assert refused.detail.startswith("1 of 2 orders v2 holds are not in v1's store as final as on v2 after 3 last "
                                     "passes: ODD-1 (v1's status 'shipped' is not one of its spellings (v2: pending))")
    assert "Going back now would lose them" in refused.detail
    without = await asyncio.to_thread(check, dataclasses.replace(request, database_url=None), POLICY,
                                      UpstreamSpec("v2", stack.url))
    assert not without.ok and "pass --from (v1's store) and --database-url" in without.detail


async def test_the_check_lets_the_way_back_go_on_and_names_the_orders_v1_alone_says_were_paid(
    stack: Stack, tmp_path: Path
) -> None:
    # an unsigned settlement sent to v1 directly: v1 applied it
    request = await way_back_with_a_v1_row(stack, tmp_path, "FORGED-1", "paid")
    passed = await asyncio.to_thread(check, request, POLICY, UpstreamSpec("v2", stack.url))
    assert passed.ok, passed.detail  # the way back is not refused for what v1 held before
    assert ("Mind 1 v1 holds as more final than v2 does, which it keeps: FORGED-1 (v1 says paid, v2 says "
            "pending); v1 applies notifications unverified, so ask Midtrans") in passed.detail
    assert "FINE-1" not in passed.detail

"""v1's SQLite orders into v2: read-only, idempotent, never regressing, verified, and carrying a
money-moving v1 status only on evidence (Midtrans' word; v1 applies forged notifications too)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from controlplane.cli import ExitStatus, run
from controlplane.evidence import EvidenceCheck
from controlplane.midtrans_status import MidtransStatus
from controlplane.migrate import MigrationProblem
from standins.midtrans import FakeMidtrans
from tests.conftest import Database
from tests.controlplane.migrate.conftest import (
    KEY,
    fingerprint,
    migrate,
    settle,
    v2_execute,
    v2_orders,
    v2_times,
)


async def test_migrates_both_spellings_reports_bad_rows_and_reruns_change_nothing(
    database: Database, tenant: str, orders_db: Path, midtrans: FakeMidtrans
) -> None:
    before = fingerprint(orders_db)
    report = await migrate(orders_db, database.app_url, tenant)
    assert (report.read, report.inserted, report.updated, len(report.bad)) == (8, 5, 0, 3)
    assert {order_id for order_id, _ in report.bad} == {"BAD-EMAIL", "BAD-AMOUNT", "BAD-STATUS"}
    assert report.clean and report.confirmed == 2 and report.unconfirmed == []  # both paid rows, by Get Status
    assert v2_orders(database, tenant) == {
        "261225AB12CD": ("paid", 150000), "261225AB12CE": ("pending", 99000), "261225AB12CF": ("pending", 50000),
        "261225AB12D0": ("paid", 75000), "261225AB12D1": ("expired", 10000)}
    asked = midtrans.status_calls
    again = await migrate(orders_db, database.app_url, tenant)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 5)
    assert midtrans.status_calls == asked  # v2 holds them paid now: nothing to confirm
    after = fingerprint(orders_db)
    # The data file is byte-identical, and nothing was left beside it: v1's file uses a rollback
    # journal (as the real v1's does), and a read-only reader creates neither a journal nor a WAL.
    assert after == before and set(after) == {"orders.db"}


async def test_v2_progress_is_never_regressed_and_v1_progress_is_applied(
    database: Database, tenant: str, orders_db: Path, midtrans: FakeMidtrans
) -> None:
    await migrate(orders_db, database.app_url, tenant)
    with psycopg.connect(database.admin_url) as conn:  # a webhook on v2 paid this order meanwhile
        conn.execute("UPDATE payments.orders SET payment_status = 'paid' WHERE order_id = '261225AB12CE' AND "
                     "tenant_id = (SELECT id FROM payments.tenants WHERE slug = %s)", (tenant,))
    writer = sqlite3.connect(orders_db)
    writer.execute("UPDATE orders SET status = 'PAID' WHERE id = '261225AB12CF'")  # v1 progressed too
    writer.commit()
    writer.close()
    settle(midtrans, "261225AB12CF", 50000)  # ... because the buyer paid
    report = await migrate(orders_db, database.app_url, tenant)
    assert (report.updated, report.kept_newer) == (1, 1) and report.clean
    orders = v2_orders(database, tenant)
    assert orders["261225AB12CE"][0] == "paid" and orders["261225AB12CF"][0] == "paid"


async def test_reads_while_v1_holds_a_write_transaction(database: Database, tenant: str, orders_db: Path,
                                                        midtrans: FakeMidtrans) -> None:
    writer = sqlite3.connect(orders_db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                   "VALUES ('UNCOMMITTED-1', 'Z', 'z@example.com', '1', 5, 'midtrans', 'pending')")
    try:
        report = await migrate(orders_db, database.app_url, tenant)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert report.inserted == 5 and "UNCOMMITTED-1" not in v2_orders(database, tenant)


async def test_dry_run_writes_nothing(database: Database, tenant: str, orders_db: Path,
                                     midtrans: FakeMidtrans) -> None:
    report = await migrate(orders_db, database.app_url, tenant, dry_run=True)
    assert report.inserted == 5
    assert v2_orders(database, tenant) == {}


async def test_cli_exit_codes_and_clear_errors(database: Database, tenant: str, orders_db: Path, tmp_path: Path,
                                              midtrans: FakeMidtrans, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["migrate", "sqlite", "--database-url", database.app_url]
    assert await asyncio.to_thread(run, [*base, "--sqlite", str(orders_db), "--tenant", tenant]) == ExitStatus.INVALID
    out = capsys.readouterr().out
    assert "5 inserted" in out and "bad row BAD-STATUS: unknown status 'SHIPPED' (not migrated)" in out
    assert "2 confirmed by Midtrans, 0 without evidence" in out
    assert "not-an-email" not in out  # a bad row is named by id, its personal data is not printed
    assert await asyncio.to_thread(run, [*base, "--sqlite", str(tmp_path / "none.db"), "--tenant", tenant]
                                   ) == ExitStatus.INVALID
    assert "none.db: no such file" in capsys.readouterr().err
    with pytest.raises(MigrationProblem, match="no tenant 'nobody'"):
        await migrate(orders_db, database.app_url, "nobody")


async def test_a_v1_paid_without_evidence_is_not_carried_into_v2(
    database: Database, tenant: str, orders_db: Path, midtrans: FakeMidtrans, capsys: pytest.CaptureFixture[str]
) -> None:
    # v1 applied forged notifications: Midtrans holds 12CD unpaid and never saw 12D0.
    settle(midtrans, "261225AB12CD", 150000, status="pending")
    del midtrans.transactions[(KEY, "261225AB12D0")]
    evidence = EvidenceCheck(MidtransStatus.from_environment())  # one check for every pass, as --follow keeps
    report = await migrate(orders_db, database.app_url, tenant, evidence=evidence)
    assert report.inserted == 5 and report.confirmed == 0
    assert sorted((j.claim.order_id, j.line()) for j in report.unconfirmed) == [
        ("261225AB12CD", "paid on v1 without evidence: inserted as pending (Midtrans says pending)"),
        ("261225AB12D0", "paid on v1 without evidence: inserted as pending (Midtrans does not know this order)")]
    orders = v2_orders(database, tenant)
    assert orders["261225AB12CD"] == ("pending", 150000) and orders["261225AB12D0"] == ("pending", 75000)
    assert report.kept_newer == 0 and report.clean

    # A forged paid for an order v2 already holds as pending: reported, not applied.
    writer = sqlite3.connect(orders_db)
    writer.execute("UPDATE orders SET status = 'PAID' WHERE id = '261225AB12CE'")
    writer.commit()
    writer.close()
    settle(midtrans, "261225AB12CE", 99000, status="pending")
    asked = evidence.asked
    again = await migrate(orders_db, database.app_url, tenant, evidence=evidence)
    assert [(j.claim.order_id, j.line()) for j in again.unconfirmed if j.claim.order_id == "261225AB12CE"] == [
        ("261225AB12CE", "paid on v1 without evidence: not applied (Midtrans says pending)")]
    assert evidence.asked == asked + 1  # the refuted claims of the pass before are not asked again at once
    assert v2_orders(database, tenant)["261225AB12CE"] == ("pending", 99000) and again.updated == 0

    # The CLI says so, line by line, and exits INVALID: someone should look at those rows.
    code = await asyncio.to_thread(run, ["migrate", "sqlite", "--database-url", database.app_url,
                                         "--sqlite", str(orders_db), "--tenant", tenant])
    out = capsys.readouterr().out
    assert code == ExitStatus.INVALID
    assert "0 confirmed by Midtrans, 3 without evidence" in out
    assert "  261225AB12CE: paid on v1 without evidence: not applied (Midtrans says pending)" in out


async def test_a_wrong_amount_is_no_evidence_and_a_recorded_confirmation_is(
    database: Database, tenant: str, orders_db: Path, midtrans: FakeMidtrans
) -> None:
    settle(midtrans, "261225AB12CD", 1000)  # settled, for another amount than v1's
    del midtrans.transactions[(KEY, "261225AB12D0")]  # Get Status would refute 12D0; but v2 recorded Midtrans' word
    with psycopg.connect(database.admin_url) as conn:
        conn.execute(
            "INSERT INTO payments.payment_events (tenant_id, order_id, signature_valid, outcome, confirmation) "
            "SELECT id, '261225AB12D0', true, 'unknown_order', %s FROM payments.tenants WHERE slug = %s",
            (json.dumps({"transaction_status": "settlement", "gross_amount": "75000.00"}), tenant))
    report = await migrate(orders_db, database.app_url, tenant, evidence=EvidenceCheck(
        MidtransStatus.from_environment()))
    assert [(j.claim.order_id, j.why) for j in report.unconfirmed] == [
        ("261225AB12CD", "Midtrans holds amount 1000.00, v1 150000")]
    orders = v2_orders(database, tenant)
    assert orders["261225AB12CD"][0] == "pending" and orders["261225AB12D0"][0] == "paid"


async def test_get_status_down_carries_nothing_and_a_later_pass_carries_it(
    database: Database, tenant: str, orders_db: Path, midtrans: FakeMidtrans
) -> None:
    midtrans.fail_next("status", "500", count=1)
    evidence = EvidenceCheck(MidtransStatus.from_environment(), give_up_after=1, concurrency=1)
    report = await migrate(orders_db, database.app_url, tenant, evidence=evidence)
    assert sorted(j.why for j in report.unconfirmed) == [
        "Get Status unavailable (Get Status answered HTTP 500)",
        "Get Status unavailable (Get Status answered HTTP 500); not asked again this pass"]
    assert evidence.asked == 1  # an outage costs one call per pass, not one per row
    assert {o: s for o, (s, _) in v2_orders(database, tenant).items() if s == "paid"} == {}
    later = await migrate(orders_db, database.app_url, tenant, evidence=evidence)  # unavailability is not remembered
    assert later.confirmed == 2 and later.updated == 2
    assert v2_orders(database, tenant)["261225AB12CD"][0] == "paid"


async def test_created_at_and_updated_at_are_v1s_and_verified(database: Database, tenant: str, orders_db: Path,
                                                              midtrans: FakeMidtrans) -> None:
    report = await migrate(orders_db, database.app_url, tenant)
    times = v2_times(database, tenant)
    assert set(times.values()) == {(datetime(2025, 12, 26, 9, 15, tzinfo=UTC), datetime(2025, 12, 26, 9, 20, 30,
                                                                                         tzinfo=UTC))}
    assert report.clean and len(times) == 5
    # An earlier migration gave its own time to what it inserted: the next pass puts v1's back.
    v2_execute(database, tenant, "UPDATE payments.orders SET created_at = now(), updated_at = now() "
               "WHERE order_id = '261225AB12CF' AND tenant_id = %s")
    again = await migrate(orders_db, database.app_url, tenant)
    assert again.updated == 1 and again.clean
    assert v2_times(database, tenant)["261225AB12CF"][0] == datetime(2025, 12, 26, 9, 15, tzinfo=UTC)
    # An order v2 took itself is never re-dated: the verification names the difference instead.
    v2_execute(database, tenant, "UPDATE payments.orders SET created_at = %s, origin = 'v2' "
               "WHERE order_id = '261225AB12CE' AND tenant_id = %s", datetime(2026, 1, 2, tzinfo=UTC))
    third = await migrate(orders_db, database.app_url, tenant, dry_run=True)
    assert third.differences == [("261225AB12CE", "created_at differ between v1 and v2")]
    # v1 changed an order later (its updated_at moved): v2 follows, never backwards.
    writer = sqlite3.connect(orders_db)
    writer.execute("UPDATE orders SET updated_at = '2025-12-27 08:00:00' WHERE id = '261225AB12D1'")
    writer.commit()
    writer.close()
    fourth = await migrate(orders_db, database.app_url, tenant)
    assert fourth.updated == 1
    assert v2_times(database, tenant)["261225AB12D1"][1] == datetime(2025, 12, 27, 8, tzinfo=UTC)


async def test_a_blank_name_and_an_amount_with_decimals_are_bad_rows_never_mended(
    database: Database, tenant: str, orders_db: Path, midtrans: FakeMidtrans
) -> None:
    writer = sqlite3.connect(orders_db)
    writer.executemany("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                       "VALUES (?, ?, ?, ?, ?, 'midtrans', 'pending')", [
                           ("BLANK-NAME", " ", "b@example.com", "0812", 1000),  # v1 accepts a blank name
                           ("CENTS", "Sari", "s@example.com", "0812", 99000.50),
                           ("WHOLE", "Tono", "t@example.com", "0812", 99000.00)])  # 99000 in an INTEGER column
    writer.commit()
    writer.close()
    report = await migrate(orders_db, database.app_url, tenant)
    bad = dict(report.bad)
    assert bad["BLANK-NAME"] == "blank customer name"
    assert bad["CENTS"] == "amount 99000.5 has decimals (v2 holds whole rupiah; not rounded)"
    orders = v2_orders(database, tenant)
    assert "BLANK-NAME" not in orders and "CENTS" not in orders and orders["WHOLE"] == ("pending", 99000)

"""`dualstack reconcile` on the real stack (PostgreSQL, the v2 app, the fake Midtrans): a lost
notification repaired, nothing applied while Get Status is down and applied by a later run, a v1
paid without evidence kept out of v2 and reported, and the gauges the alert reads."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controlplane.cli import run
from controlplane.errors import ExitStatus
from controlplane.migrate import SqliteStore, migrate
from standins.legacy_v1 import open_database
from standins.midtrans import Transaction
from tests.fixtures.v2_rows import age, emails, order, recorded
from tests.fixtures.v2_stack import Stack, Tenant


@pytest.fixture
def tenant(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Tenant:
    tenant = stack.add_tenant()
    monkeypatch.setenv("DUALSTACK_V2_ADMIN_TOKEN", tenant.admin_token)
    fake = str(stack.midtrans_server.make_url("")).rstrip("/")
    monkeypatch.setenv("DUALSTACK_MIDTRANS_CORE_URL_SANDBOX", f"{fake}/sandbox")  # for the v1 sync below
    return tenant


async def reconcile(stack: Stack, tenant: Tenant, *extra: str) -> ExitStatus:
    return await asyncio.to_thread(run, ["reconcile", "--tenant", tenant.slug, "--v2-url", stack.url,
                                         "--rate", "1000/s", *extra])


def gauges(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(path.read_text()) for s in family.samples}


async def test_a_lost_notification_is_repaired(stack: Stack, tenant: Tenant, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    await stack.create(tenant, "L-1", amount=5000)
    await stack.create(tenant, "L-FRESH", amount=5000)
    stack.midtrans.set_status("L-1", "settlement", server_key=tenant.server_key)  # paid; the notification was lost
    stack.midtrans.set_status("L-FRESH", "settlement", server_key=tenant.server_key)
    age(stack, tenant, "L-1", 30)
    metrics = tmp_path / "reconcile.prom"
    assert await reconcile(stack, tenant, "--metrics-file", str(metrics)) == ExitStatus.OK
    out = capsys.readouterr().out
    assert f"tenant {tenant.slug}: 1 orders pending on v2 for over 15m; 1 checked with Midtrans" in out
    assert "  L-1: pending -> paid (Midtrans says settlement)" in out and "stuck: 0" in out
    assert order(stack, tenant, "L-1")[0] == "paid" and emails(stack, tenant, "L-1") == 1
    assert order(stack, tenant, "L-FRESH")[0] == "pending"  # its notification may still come: not yet checked
    assert recorded(stack, tenant)[-1]["outcome"] == "reconciled"
    values = gauges(metrics)
    labels = (("tenant", tenant.slug),)
    assert values[("dualstack_reconcile_stuck_orders", labels)] == 0
    assert values[("dualstack_reconcile_last_run_success", labels)] == 1
    assert values[("dualstack_reconcile_orders", (("result", "applied"), *labels))] == 1


async def test_get_status_down_applies_nothing_and_a_later_run_applies_it(
    stack: Stack, tenant: Tenant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for order_id in ("D-1", "D-2", "D-3", "D-4"):
        await stack.create(tenant, order_id, amount=5000)
        stack.midtrans.set_status(order_id, "settlement", server_key=tenant.server_key)
        age(stack, tenant, order_id, 60)
    stack.midtrans.fail_next("status", "500", count=3)
    metrics = tmp_path / "reconcile.prom"
    calls = stack.midtrans.status_calls
    assert await reconcile(stack, tenant, "--metrics-file", str(metrics)) == ExitStatus.INVALID
    out = capsys.readouterr().out
    assert "D-1: not settled: unavailable" in out and "D-4: not asked: Get Status was unavailable" in out
    assert "stuck: 4 order(s) not settled" in out
    assert stack.midtrans.status_calls - calls == 3  # given up after three in a row: an outage costs seconds
    assert all(order(stack, tenant, o)[0] == "pending" for o in ("D-1", "D-2", "D-3", "D-4"))
    assert recorded(stack, tenant) == []
    assert gauges(metrics)[("dualstack_reconcile_stuck_orders", (("tenant", tenant.slug),))] == 4

    assert await reconcile(stack, tenant, "--metrics-file", str(metrics)) == ExitStatus.OK
    assert all(order(stack, tenant, o)[0] == "paid" for o in ("D-1", "D-2", "D-3", "D-4"))
    assert gauges(metrics)[("dualstack_reconcile_stuck_orders", (("tenant", tenant.slug),))] == 0


async def test_an_unconfirmed_notification_is_settled_by_the_next_run(
    stack: Stack, tenant: Tenant, capsys: pytest.CaptureFixture[str]
) -> None:
    await stack.create(tenant, "U-1", amount=5000)
    stack.midtrans.fail_next("status", "500")
    assert (await stack.notify("U-1", transaction_status="settlement"))[0]["status"] == 503  # unconfirmed
    assert await reconcile(stack, tenant) == ExitStatus.OK  # not old yet, but its notification is open
    assert "U-1: pending -> paid" in capsys.readouterr().out
    assert order(stack, tenant, "U-1")[0] == "paid"


async def test_a_v1_paid_without_evidence_is_not_carried_and_v1_is_only_reported(
    stack: Stack, tenant: Tenant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # v1's file: a forged paid (Midtrans holds it unpaid), and a real payment whose notification v1 lost.
    for order_id, status in (("V1-FORGED", "pending"), ("V1-PAID-LATE", "settlement")):
        stack.midtrans.transactions[(tenant.server_key, order_id)] = Transaction(
            order_id, 7000, tenant.server_key, "sandbox", "token", f"tx-{order_id}", [], status=status)
    orders_db = tmp_path / "orders.db"
    v1 = open_database(orders_db)
    v1.executemany("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status, created_at) "
                   "VALUES (?, 'Budi', 'budi@example.com', '0812', 7000, 'midtrans', ?, datetime('now', '-1 hour'))",
                   [("V1-FORGED", "PAID"), ("V1-PAID-LATE", "PENDING_PAYMENT")])
    v1.close()
    report = await asyncio.to_thread(migrate, SqliteStore(orders_db), stack.database.app_url, tenant.slug)
    assert [(j.claim.order_id, j.line()) for j in report.unconfirmed] == [
        ("V1-FORGED", "paid on v1 without evidence: inserted as pending (Midtrans says pending)")]
    assert order(stack, tenant, "V1-FORGED")[0] == "pending"
    for order_id in ("V1-FORGED", "V1-PAID-LATE"):
        age(stack, tenant, order_id, 60)  # pending on v2 for long enough to be checked

    assert await reconcile(stack, tenant, "--sqlite", str(orders_db)) == ExitStatus.OK
    out = capsys.readouterr().out
    assert order(stack, tenant, "V1-FORGED")[0] == "pending"  # Midtrans says pending: still not paid
    assert order(stack, tenant, "V1-PAID-LATE")[0] == "paid"  # v2's copy settled on Midtrans' word
    assert "v1: 1 pending orders checked, 1 that Midtrans settled otherwise (reported only)" in out
    assert "v1 order V1-PAID-LATE: pending on v1, Midtrans says settlement (paid); v1 is never written" in out
    with sqlite3.connect(f"file:{orders_db}?mode=ro", uri=True) as check:
        assert dict(check.execute("SELECT id, status FROM orders").fetchall())["V1-PAID-LATE"] == "PENDING_PAYMENT"


async def test_clear_errors_without_a_token_or_with_a_wrong_one(
    stack: Stack, tenant: Tenant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path
) -> None:
    monkeypatch.delenv("DUALSTACK_V2_ADMIN_TOKEN")
    assert await reconcile(stack, tenant) == ExitStatus.USAGE
    assert "set DUALSTACK_V2_ADMIN_TOKEN to the tenant's admin token" in capsys.readouterr().err
    monkeypatch.setenv("DUALSTACK_V2_ADMIN_TOKEN", "not-the-token")
    metrics = tmp_path / "reconcile.prom"
    assert await reconcile(stack, tenant, "--metrics-file", str(metrics)) == ExitStatus.ENVIRONMENT
    err = capsys.readouterr().err
    assert f"v2 refused the admin token for tenant {tenant.slug}" in err and "not-the-token" not in err
    assert gauges(metrics)[("dualstack_reconcile_last_run_success", (("tenant", tenant.slug),))] == 0
    assert await asyncio.to_thread(run, ["reconcile", "--tenant", tenant.slug, "--v2-url", "http://127.0.0.1:1",
                                         "--older-than", "soon"]) == ExitStatus.USAGE

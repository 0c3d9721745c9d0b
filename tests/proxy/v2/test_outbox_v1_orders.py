"""Orders v1 created (migrated into v2) never get v2's emails: v1 sent the order email, and sends the
payment email when it applies the settlement (the router copies notifications to both backends).
Ops can still send one (`dualstack outbox retry`), and see every email with `dualstack outbox list`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest

from controlplane.cli import run
from controlplane.errors import ExitStatus
from controlplane.evidence import EvidenceCheck
from controlplane.midtrans_status import MidtransStatus
from controlplane.migrate import SqliteStore, migrate
from standins.legacy_v1 import open_database
from standins.midtrans import Transaction, signature
from tests.conftest import wait_until
from tests.fixtures.v2_stack import Stack, Tenant

SKIPPED = "order created on v1, which sends its emails"


def settlement(tenant: Tenant, order_id: str, amount: int) -> dict[str, Any]:
    gross = f"{amount}.00"
    return {"transaction_time": "2026-11-27 10:00:00", "transaction_status": "settlement",
            "transaction_id": f"tx-{order_id}", "status_message": "ok", "status_code": "200",
            "signature_key": signature(order_id, "200", gross, tenant.server_key), "payment_type": "bank_transfer",
            "order_id": order_id, "merchant_id": "G000000000", "gross_amount": gross, "currency": "IDR",
            "settlement_time": "2026-11-27 10:00:05"}


def v1_orders(path: Path, *rows: tuple[str, str]) -> None:
    db = open_database(path)
    for order_id, status in rows:
        db.execute("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                   "VALUES (?, 'Sari', 'sari@example.com', '0812', 99000, 'midtrans', ?) "
                   "ON CONFLICT (id) DO UPDATE SET status = excluded.status", (order_id, status))
    db.close()


def origins(stack: Stack, tenant: Tenant) -> dict[str, str]:
    with psycopg.connect(stack.database.admin_url) as conn:
        return dict(conn.execute("SELECT order_id, origin FROM payments.orders WHERE tenant_id = %s",
                                 (tenant.id,)).fetchall())


def cli(stack: Stack, *args: str) -> list[str]:
    layout = stack.database.layout
    return [*args, "--admin-url", stack.database.admin_url, "--owner-role", layout.owner_role,
            "--app-role", layout.app_role]


async def test_migrated_orders_get_no_email_from_v2_and_ops_can_send_one(
        stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tenant = stack.add_tenant()
    orders_db = tmp_path / "orders.db"
    v1_orders(orders_db, ("MIG-PENDING", "PENDING_PAYMENT"), ("MIG-PAID", "PAID"), ("MIG-LATER", "PENDING_PAYMENT"))
    # Midtrans holds what v1 created; v1's "paid" is carried only on its word (Get Status at the fake).
    for order_id, status in (("MIG-PENDING", "pending"), ("MIG-PAID", "settlement"), ("MIG-LATER", "pending")):
        stack.midtrans.transactions[(tenant.server_key, order_id)] = Transaction(
            order_id, 99000, tenant.server_key, "sandbox", f"tok-{order_id}", f"tx-{order_id}", [], status)
    fake = str(stack.midtrans_server.make_url("")).rstrip("/")
    evidence = EvidenceCheck(MidtransStatus({"sandbox": f"{fake}/sandbox", "production": f"{fake}/production"}))
    report = await asyncio.to_thread(migrate, SqliteStore(orders_db), stack.database.app_url, tenant.slug,
                                     evidence=evidence)
    assert report.inserted == 3 and report.clean
    assert origins(stack, tenant) == {"MIG-PENDING": "v1", "MIG-PAID": "v1", "MIG-LATER": "v1"}
    assert stack.outbox_rows(tenant) == []  # the migration writes no emails

    # v1 took this settlement too (a copy) and emailed; the migration carries its status: no email.
    v1_orders(orders_db, ("MIG-LATER", "PAID"))
    stack.midtrans.set_status("MIG-LATER", "settlement", server_key=tenant.server_key)
    assert (await asyncio.to_thread(migrate, SqliteStore(orders_db), stack.database.app_url, tenant.slug,
                                    evidence=evidence)).updated == 1
    # Settlements arriving on v2: for the order v1 already emailed as paid, and for the one still pending.
    for order_id in ("MIG-PAID", "MIG-PENDING"):
        stack.midtrans.set_status(order_id, "settlement", server_key=tenant.server_key)  # what Get Status says
        status, body = await stack.request("POST", "/webhooks/midtrans", tenant, json=settlement(tenant, order_id,
                                                                                                  99000))
        assert (status, body) == (200, "OK")
    assert (await stack.request("GET", "/orders/MIG-PENDING/status", tenant))[1]["order"]["status"] == "PAID"
    for _ in range(3):
        await stack.sweep(tenant)
    assert stack.outbox_rows(tenant) == [("MIG-PENDING", "payment_confirmation", "skipped", 0, SKIPPED)]
    assert [m for m in stack.relay.received if "MIG-" in str(m["Message-ID"])] == []

    # Ops: the list shows why; a retry sends it once (e.g. v1 was already gone when it settled).
    assert run(cli(stack, "outbox", "list", "--tenant", tenant.slug, "--status", "skipped")) == ExitStatus.OK
    listing = capsys.readouterr().out
    assert "MIG-PENDING" in listing and SKIPPED in listing and "1 email(s)" in listing
    with psycopg.connect(stack.database.admin_url) as conn:
        row = conn.execute("SELECT id FROM payments.notification_outbox WHERE tenant_id = %s", (tenant.id,)).fetchone()
    assert row is not None
    assert run(cli(stack, "outbox", "retry", "--tenant", tenant.slug, str(row[0]))) == ExitStatus.OK
    assert f"outbox row {row[0]} (payment_confirmation for order MIG-PENDING) was skipped: due now" in \
        capsys.readouterr().out
    await stack.sweep(tenant)
    await wait_until(lambda: stack.outbox_rows(tenant)[0][2] == "sent")
    assert len(stack.relay.to("MIG-PENDING")) == 1
    # Sending it again would be a duplicate: refused.
    assert run(cli(stack, "outbox", "retry", "--tenant", tenant.slug, str(row[0]))) == ExitStatus.INVALID
    assert "was sent; sending it again would be a duplicate" in capsys.readouterr().err


async def test_retry_all_dead_sends_the_dead_letters_once(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    tenant = stack.add_tenant()
    stack.relay.handler.rcpt_answers = ["550 5.1.1 no such mailbox"] * 2
    await stack.create(tenant, "DEAD-1")
    await stack.create(tenant, "DEAD-2")
    await wait_until(lambda: [row[2] for row in stack.outbox_rows(tenant)] == ["dead", "dead"])
    assert run(cli(stack, "outbox", "list", "--tenant", tenant.slug, "--status", "dead")) == ExitStatus.OK
    assert capsys.readouterr().out.count("550 5.1.1 no such mailbox") == 2
    assert run(cli(stack, "outbox", "retry", "--tenant", tenant.slug, "--all-dead")) == ExitStatus.OK
    assert "2 email(s) due again" in capsys.readouterr().out
    await stack.sweep(tenant)  # v2's own worker may hold them ("sending") when this sweep runs: wait for it
    await wait_until(lambda: [row[2] for row in stack.outbox_rows(tenant)] == ["sent", "sent"])
    assert [row[2:4] for row in stack.outbox_rows(tenant)] == [("sent", 1), ("sent", 1)]  # fresh attempts
    assert len(stack.relay.to("DEAD-1")) == 1 and len(stack.relay.to("DEAD-2")) == 1
    assert run(cli(stack, "outbox", "list", "--tenant", "no-such-shop")) == ExitStatus.INVALID
    assert "no tenant 'no-such-shop'" in capsys.readouterr().err


def test_tenant_list_names_each_tenants_relay_and_warns_of_those_without(
        stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    with_relay = stack.add_tenant(smtp_security="starttls", smtp_credential="shared", smtp_port=None)
    without = stack.add_tenant(smtp_host=None)
    assert run(cli(stack, "tenant", "list")) == ExitStatus.OK
    out, err = capsys.readouterr()
    line = next(line for line in out.splitlines() if line.startswith(with_relay.slug))
    assert "127.0.0.1:587 starttls as shared" in line
    assert "NONE" in next(line for line in out.splitlines() if line.startswith(without.slug))
    assert f"warning: tenant {without.slug}: no SMTP relay: its customers' emails wait in v2's outbox" in err
    assert f"tenant {with_relay.slug}:" not in err

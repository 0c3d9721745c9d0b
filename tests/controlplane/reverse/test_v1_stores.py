"""v2's orders written back into both of v1's store generations by a real pass: orders created and
paid on the real v2 appear in v1's SQLite file and PostgreSQL table with v1's spellings and shapes;
no row is ever regressed; a row v1 moved on stays; a v1 that holds its SQLite file busy loses no write."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from controlplane.reverse.rows import Action
from controlplane.reverse.run import PassReport, reverse_pass, verify_both_sides
from controlplane.reverse.v1_stores import PostgresWriter, ReverseSyncProblem, SqliteWriter, V1Writer
from standins.legacy_v1.stores import POSTGRESQL_SCHEMA, open_database
from tests.fixtures.v2_stack import Stack, Tenant


@dataclass
class V1:
    """One of v1's stores as v1 itself left it (its own schema), and a way to read and write it behind v1's back."""

    writer: V1Writer
    sqlite: Path | None = None
    url: str | None = None

    def rows(self) -> dict[str, tuple[Any, ...]]:
        """id -> (status, amount, payment_method, customer_name, created_at)"""
        sql = "SELECT id, status, amount, payment_method, customer_name, created_at FROM "
        if self.sqlite is not None:
            with sqlite3.connect(self.sqlite) as conn:
                return {r[0]: r[1:] for r in conn.execute(sql + "orders")}
        assert self.url is not None
        with psycopg.connect(self.url) as conn:
            return {r[0]: r[1:] for r in conn.execute(sql + "payment_orders")}

    def execute(self, sql: str, *args: Any) -> None:
        if self.sqlite is not None:
            with sqlite3.connect(self.sqlite) as conn:
                conn.execute(sql.replace("%s", "?"), args)
            return
        assert self.url is not None
        with psycopg.connect(self.url) as conn:
            conn.execute(sql, args)


@pytest.fixture(params=["sqlite", "postgresql"])
def v1(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[V1]:
    if request.param == "sqlite":
        path = tmp_path / "orders.db"
        open_database(path).close()
        yield V1(SqliteWriter(path, "upper"), sqlite=path)  # the later SQLite variant: PENDING_PAYMENT/PAID
        return
    url: str = request.getfixturevalue("empty_database")
    with psycopg.connect(url) as conn:
        conn.execute(POSTGRESQL_SCHEMA)
    yield V1(PostgresWriter(url, "v1's payment_orders"), url=url)


async def one_pass(stack: Stack, v1: V1, tenant: Tenant, watermark: Any = None) -> PassReport:
    return await asyncio.to_thread(reverse_pass, v1.writer, stack.database.app_url, tenant.slug,
                                   stack.database.layout.schema, watermark=watermark)


async def test_orders_created_and_paid_on_v2_appear_in_v1_with_its_spellings(stack: Stack, v1: V1) -> None:
    tenant = stack.add_tenant()
    for order_id in ("R-1", "R-2"):
        assert (await stack.create(tenant, order_id, amount=99000))[0] == 200
    first = await one_pass(stack, v1, tenant)
    assert (first.read, first.written.counts[Action.INSERT]) == (2, 2)
    await stack.notify("R-1", transaction_status="settlement")
    await stack.notify("R-2", transaction_status="expire")
    second = await one_pass(stack, v1, tenant, first.watermark)
    assert second.written.counts[Action.UPDATE] == 2 and second.watermark > first.watermark
    rows = v1.rows()
    upper = v1.sqlite is not None
    assert {k: v[0] for k, v in rows.items()} == ({"R-1": "PAID", "R-2": "EXPIRED"} if upper
                                                  else {"R-1": "paid", "R-2": "expired"})
    _, amount, method, name, created_at = rows["R-1"]
    assert (int(amount), method, name) == (99000, "midtrans", "Budi")  # v1's shapes: it always writes midtrans
    if upper:  # as SQLite's CURRENT_TIMESTAMP writes it
        assert len(created_at) == 19 and created_at[10] == " "
    again = await one_pass(stack, v1, tenant, second.watermark)  # the overlap reads them again: nothing changes
    assert again.written.copied == 0
    verification = await asyncio.to_thread(verify_both_sides, v1.writer, stack.database.app_url, tenant.slug)
    assert verification.clean and verification.checked == 2


async def test_a_v1_row_as_final_or_more_final_is_never_regressed(stack: Stack, v1: V1) -> None:
    tenant = stack.add_tenant()
    for order_id in ("K-PAID", "K-REFUNDED", "K-ODD"):
        await stack.create(tenant, order_id, amount=1000)
    await stack.notify("K-REFUNDED", transaction_status="settlement")
    for order_id, status in (("K-PAID", "paid"), ("K-REFUNDED", "refunded"), ("K-ODD", "shipped")):
        # v1 moved on by itself (a notification v2 did not see yet; its admin page's refund; any string)
        v1.execute("INSERT INTO " + ("orders" if v1.sqlite else "payment_orders") + " (id, customer_name, email, "
                   "phone, amount, payment_method, status) VALUES (%s, 'Budi', 'b@example.com', '0812', 1000, "
                   "'midtrans', %s)", order_id, status)
    report = await one_pass(stack, v1, tenant)
    assert report.written.counts[Action.KEPT_V1] == 2 and report.written.copied == 0
    assert report.written.unknown == [("K-ODD", "shipped")]
    assert {k: v[0] for k, v in v1.rows().items()} == {"K-PAID": "paid", "K-REFUNDED": "refunded", "K-ODD": "shipped"}
    behind = (await asyncio.to_thread(verify_both_sides, v1.writer, stack.database.app_url, tenant.slug)).behind
    assert [order_id for order_id, _ in behind] == ["K-ODD"]  # a status v1 does not spell is reported, not mended


async def test_a_refund_reaches_a_v1_that_missed_the_payment_between_two_passes(stack: Stack, v1: V1) -> None:
    tenant = stack.add_tenant()
    await stack.create(tenant, "RF-1", amount=1000)
    first = await one_pass(stack, v1, tenant)  # v1 holds it pending
    await stack.notify("RF-1", transaction_status="settlement")
    await stack.notify("RF-1", transaction_status="refund")  # paid and refunded before the next pass
    second = await one_pass(stack, v1, tenant, first.watermark)
    assert second.written.counts[Action.UPDATE] == 1
    assert v1.rows()["RF-1"][0] == ("REFUNDED" if v1.sqlite is not None else "refunded")
    assert (await asyncio.to_thread(verify_both_sides, v1.writer, stack.database.app_url, tenant.slug)).clean


async def test_a_v1_that_holds_its_sqlite_file_busy_loses_no_write(stack: Stack, tmp_path: Path) -> None:
    tenant = stack.add_tenant()
    path = tmp_path / "orders.db"
    open_database(path).close()
    ids = [f"B-{n}" for n in range(120)]  # several batches
    for order_id in ids:
        await stack.create(tenant, order_id, amount=1000)
    stop = threading.Event()
    v1_wrote: list[str] = []

    def v1_writer() -> None:
        # v1's own writes, one request after the other, each holding the file's write lock a while
        conn = sqlite3.connect(path, timeout=10, isolation_level=None)
        n = 0
        while not stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO orders (id, customer_name, email, phone, amount, payment_method, status) "
                         "VALUES (?, 'Sari', 's@example.com', '0813', 5000, 'midtrans', 'pending')", (f"V1-{n}",))
            time.sleep(0.03)
            conn.execute("COMMIT")
            v1_wrote.append(f"V1-{n}")
            n += 1
            stop.wait(0.03)  # the next request
        conn.close()

    thread = threading.Thread(target=v1_writer)
    thread.start()
    try:
        report = await asyncio.to_thread(reverse_pass, SqliteWriter(path, "lower"), stack.database.app_url,
                                         tenant.slug)
    finally:
        stop.set()
        thread.join()
    assert report.written.counts[Action.INSERT] == len(ids)
    held = {k for k in V1(SqliteWriter(path), sqlite=path).rows()}
    assert held == set(ids) | set(v1_wrote) and len(v1_wrote) > 0


async def test_a_file_busy_for_longer_than_the_bound_fails_the_pass_and_writes_nothing_half(
    stack: Stack, tmp_path: Path
) -> None:
    tenant = stack.add_tenant()
    path = tmp_path / "orders.db"
    open_database(path).close()
    await stack.create(tenant, "H-1", amount=1000)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # v1 stuck inside a transaction
    try:
        with pytest.raises(ReverseSyncProblem) as caught:
            await asyncio.to_thread(reverse_pass, SqliteWriter(path, "lower", busy_timeout_s=0.05),
                                    stack.database.app_url, tenant.slug)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert caught.value.side == "v1" and "busy" in str(caught.value)
    assert V1(SqliteWriter(path), sqlite=path).rows() == {}


def test_v1s_store_is_never_created(tmp_path: Path) -> None:
    with pytest.raises(ReverseSyncProblem, match="no such file"):
        SqliteWriter(tmp_path / "missing.db").spelling()
    assert not (tmp_path / "missing.db").exists()

"""The v1 stand-in does what the real v1 does, in both generations, flaws included: dualstack's tests
then prove that the router protects v1 rather than assume v1 is well behaved."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from standins.legacy_v1 import LegacyV1, SqliteOrders, open_database
from standins.legacy_v1.express import etag
from standins.legacy_v1.mail import Mailer
from standins.midtrans import FakeMidtrans, signature
from tests.fixtures.smtp_relay import Relay
from tests.standins.conftest import ADMIN_PASSWORD, KEY, V1

ORDER = {"orderId": "261225AB12CD", "amount": 150000, "email": "budi@example.com", "phone": "0812", "name": "Budi",
         "paymentMethod": "bca"}


async def post(url: str, body: Any, **kwargs: Any) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as s, s.post(url, json=body, **kwargs) as r:
        text = await r.text()
        return r.status, (json.loads(text) if r.content_type == "application/json" else text), r.headers


async def get(url: str, **kwargs: Any) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as s, s.get(url, **kwargs) as r:
        text = await r.text()
        return r.status, (json.loads(text) if r.content_type == "application/json" else text), r.headers


def notification(order_id: str, status: str, amount: str = "150000.00", **extra: str) -> dict[str, str]:
    return {"order_id": order_id, "transaction_status": status, "status_code": "200", "gross_amount": amount,
            "signature_key": "0" * 128, **extra}


async def test_create_writes_the_order_in_the_generation_s_store_with_v1_s_spelling(v1: V1) -> None:
    status, created, headers = await post(f"{v1.url}/payment/create", ORDER)
    assert status == 200 and set(created) == {"success", "paymentUrl", "token"} and created["success"] is True
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert v1.rows("id, status, amount, token IS NOT NULL, created_at IS NOT NULL") == [
        ("261225AB12CD", "pending", 150000, True, True)]
    if v1.generation == "sqlite":
        with sqlite3.connect(v1.location) as conn:  # a rollback journal, not WAL
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    else:
        with psycopg.connect(v1.location) as conn:
            columns = conn.execute("SELECT column_name, data_type, numeric_precision, numeric_scale FROM "
                                   "information_schema.columns WHERE table_name = 'payment_orders' "
                                   "ORDER BY ordinal_position").fetchall()
        assert [c[0] for c in columns] == ["id", "customer_name", "email", "phone", "amount", "payment_method",
                                           "status", "payment_url", "token", "created_at", "updated_at"]
        assert columns[4][1:] == ("numeric", 15, 2)


async def test_status_and_health_exist_only_in_the_postgresql_generation(v1: V1) -> None:
    await post(f"{v1.url}/payment/create", {**ORDER, "amount": "99000.50" if v1.generation == "postgresql"
                                            else 99000})
    status, body, headers = await get(f"{v1.url}/orders/261225AB12CD/status")
    health = [(await get(f"{v1.url}{path}"))[:2] for path in ("/health", "/health/ready", "/health/live")]
    if v1.generation == "sqlite":
        assert (status, headers["Content-Type"]) == (404, "text/html; charset=utf-8")
        assert "<pre>Cannot GET /orders/261225AB12CD/status</pre>" in body
        assert [code for code, _ in health] == [404, 404, 404]
        return
    # Lower-case status, the amount as a string, no customerName: the funnel's page never sees PAID.
    assert (status, body) == (200, {"success": True, "order": {
        "id": "261225AB12CD", "status": "pending", "totalAmount": "99000.50", "email": "budi@example.com"}})
    assert (await get(f"{v1.url}/orders/NOPE/status"))[0] == 404
    (code, full), ready, live = health
    assert code == 200 and full["status"] == "healthy" and {"uptime", "timestamp", "service", "database"} <= set(full)
    assert ready[0] == live[0] == 200


async def test_notifications_are_applied_without_any_signature_or_amount_check(v1: V1) -> None:
    await post(f"{v1.url}/payment/create", ORDER)
    await post(f"{v1.url}/payment/create", {**ORDER, "orderId": "261225AB12CE"})
    await post(f"{v1.url}/payment/create", {**ORDER, "orderId": "261225AB12CF"})
    # A forged signature and a wrong amount: 200 "OK" (as text/html) and paid.
    status, text, headers = await post(f"{v1.url}/webhooks/midtrans", notification("261225AB12CD", "settlement", "1.00"))
    assert (status, text, headers["Content-Type"]) == (200, "OK", "text/html; charset=utf-8")
    assert v1.status("261225AB12CD") == "paid"
    # capture paid even when the fraud check denied it; expire changes nothing; an unknown order is a 200.
    await post(f"{v1.url}/webhooks/midtrans", notification("261225AB12CE", "capture", fraud_status="deny"))
    await post(f"{v1.url}/webhooks/midtrans", notification("261225AB12CF", "expire"))
    assert (v1.status("261225AB12CE"), v1.status("261225AB12CF")) == ("paid", "pending")
    assert (await post(f"{v1.url}/Webhooks/Midtrans/", notification("NOPE", "settlement")))[:2] == (200, "OK")
    genuine = notification("261225AB12CF", "settlement")
    genuine["signature_key"] = signature("261225AB12CF", "200", "150000.00", KEY)
    assert (await post(f"{v1.url}/webhooks/midtrans", genuine))[:2] == (200, "OK")
    assert v1.status("261225AB12CF") == "paid"


async def test_v1_s_validation_and_its_500s(v1: V1) -> None:
    def body(**changes: Any) -> dict[str, Any]:
        return {**ORDER, "orderId": "V-" + "-".join(sorted(changes)), **changes}

    status, answer, _ = await post(f"{v1.url}/payment/create", body(email="a@b"))
    assert (status, answer["details"]) == (400, ["Valid email is required"])
    status, answer, _ = await post(f"{v1.url}/payment/create", body(email="a@b.co\n"))  # whole string only
    assert (status, answer["details"]) == (400, ["Valid email is required"])
    async with aiohttp.ClientSession() as s, s.post(f"{v1.url}/payment/create", data=json.dumps(ORDER)) as r:
        assert r.status == 400 and len((await r.json())["details"]) == 5  # no Content-Type: an empty body
    assert (await post(f"{v1.url}/payment/create", body(name=" ")))[0] == 200  # a blank name is accepted
    assert (await post(f"{v1.url}/payment/create", body(amount="abc")))[0] == 500
    calls = v1.fake.snap_calls
    status, answer, _ = await post(f"{v1.url}/payment/create", body(name=" "))  # the same orderId again
    assert status == 500 and answer["success"] is False  # the database's duplicate key, not a 409
    assert v1.fake.snap_calls == calls + (1 if v1.generation == "sqlite" else 0)  # Snap first (PG: breaker open)
    assert [name for (name,) in v1.rows("customer_name")] == [" "]


async def test_midtrans_down(v1: V1) -> None:
    v1.fake.fail_next("snap", "hang")
    status, answer, _ = await post(f"{v1.url}/payment/create", ORDER)
    if v1.generation == "sqlite":
        assert (status, answer["success"], v1.rows()) == (500, False, [])
        return
    # 200 with no payment link, the order stored, and Midtrans skipped for the next create (breaker).
    assert (status, answer, v1.rows()) == (200, {"success": True}, [("261225AB12CD", "pending")])
    calls = v1.fake.snap_calls
    assert (await post(f"{v1.url}/payment/create", {**ORDER, "orderId": "X2"}))[1] == {"success": True}
    assert v1.fake.snap_calls == calls


async def test_express_defaults_on_every_answer(v1: V1) -> None:
    _, _, created = await post(f"{v1.url}/payment/create", ORDER)
    missing, page, not_found = await get(f"{v1.url}/x?y=1")
    assert missing == 404 and "<pre>Cannot GET /x</pre>" in page and "ETag" not in not_found
    _, _, invalid = await post(f"{v1.url}/payment/create", {})
    for headers in (created, not_found, invalid):
        assert headers["X-Powered-By"] == "Express" and headers["Access-Control-Allow-Origin"] == "*"
        assert headers["Keep-Alive"] == "timeout=5" and headers["Connection"] == "keep-alive"
    assert created["ETag"].startswith('W/"') and invalid["ETag"].startswith('W/"')
    async with aiohttp.ClientSession() as s, s.options(f"{v1.url}/payment/create", headers={
            "Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"}) as r:
        assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "*"
        assert r.headers["Access-Control-Allow-Methods"] == "GET,HEAD,PUT,PATCH,POST,DELETE"
        assert r.headers["Access-Control-Allow-Headers"] == "content-type"
    # A GET's ETag, and 304 when the client already holds it.
    path = "/orders/261225AB12CD/status" if v1.generation == "postgresql" else "/admin/orders"
    login = (await post(f"{v1.url}/admin/login", {"username": "admin", "password": ADMIN_PASSWORD}))[1]
    headers = {"Authorization": f"Bearer {login['token']}"}
    _, body, first = await get(f"{v1.url}{path}", headers=headers)
    assert first["ETag"] == etag(json.dumps(body, separators=(",", ":")).encode())
    async with aiohttp.ClientSession() as s, s.get(f"{v1.url}{path}",
                                                   headers={**headers, "If-None-Match": first["ETag"]}) as r:
        assert r.status == 304 and await r.read() == b""


async def test_admin_sets_any_status_string(v1: V1) -> None:
    await post(f"{v1.url}/payment/create", ORDER)
    assert (await post(f"{v1.url}/admin/login", {"username": "admin", "password": "nope"}))[0] == 401
    assert (await get(f"{v1.url}/admin/orders"))[0] == 401
    login = (await post(f"{v1.url}/admin/login", {"username": "admin", "password": ADMIN_PASSWORD}))[1]
    headers = {"Authorization": f"Bearer {login['token']}"}
    async with aiohttp.ClientSession() as s:
        async with s.put(f"{v1.url}/admin/orders/261225AB12CD", json={"status": "refunded"}, headers=headers) as r:
            assert r.status == 200
    status, listed, _ = await get(f"{v1.url}/admin/orders", headers=headers)
    assert status == 200 and [(o["id"], o["status"]) for o in listed["orders"]] == [("261225AB12CD", "refunded")]


async def test_the_sqlite_generation_awaits_its_emails_and_answers_500_after_writing(
    aiohttp_server: Any, midtrans: tuple[FakeMidtrans, str], tmp_path: Path, relay: Relay, free_port: Callable[[], int]
) -> None:
    fake, fake_url = midtrans
    path = tmp_path / "orders.db"
    urls = {}
    for name, port in (("up", relay.port), ("down", free_port())):  # "down": nothing listens there
        stand_in = LegacyV1(SqliteOrders(open_database(path)), server_key=KEY,
                            snap_url=f"{fake_url}/sandbox/snap/v1/transactions", mailer=Mailer("127.0.0.1", port))
        urls[name] = str((await aiohttp_server(stand_in.app())).make_url("")).rstrip("/")
    assert (await post(f"{urls['up']}/payment/create", ORDER))[0] == 200
    assert (await post(f"{urls['up']}/webhooks/midtrans", notification("261225AB12CD", "settlement")))[0] == 200
    assert [m["To"] for m in relay.received] == ["budi@example.com"] * 2
    status, answer, _ = await post(f"{urls['down']}/payment/create", {**ORDER, "orderId": "261225AB12CE"})
    assert status == 500 and answer["success"] is False
    assert (await post(f"{urls['down']}/webhooks/midtrans", notification("261225AB12CE", "settlement")))[0] == 500
    with sqlite3.connect(path) as conn:  # both were written all the same
        assert conn.execute("SELECT id, status FROM orders ORDER BY id").fetchall() == [
            ("261225AB12CD", "paid"), ("261225AB12CE", "paid")]
    assert fake.snap_calls == 2


def test_the_cli_serves_the_postgresql_generation(empty_database: str, free_port: Callable[[], int]) -> None:
    port = free_port()
    env = dict(os.environ, MIDTRANS_SERVER_KEY=KEY, DATABASE_URL=empty_database)
    process = subprocess.Popen([sys.executable, "-m", "standins.legacy_v1", "--store", "postgresql", "--listen",
                                f"127.0.0.1:{port}", "--snap-url", "http://127.0.0.1:9/snap"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1) as response:
                    assert response.status == 200 and response.headers["X-Powered-By"] == "Express"
                    break
            except OSError:
                assert process.poll() is None, "the stand-in exited"
                time.sleep(0.1)
        else:
            raise AssertionError("the stand-in never answered")
        with psycopg.connect(empty_database) as conn:  # it made its table
            assert conn.execute("SELECT count(*) FROM payment_orders").fetchone() == (0,)
    finally:
        process.terminate()
        process.wait(timeout=20)

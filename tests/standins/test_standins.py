"""The fake Midtrans and the legacy v1 stand-in honour the contracts the project depends on."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from standins.legacy_v1 import LegacyV1, open_database
from standins.midtrans import FakeMidtrans, signature

KEY = "SB-Mid-server-STANDIN0001"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


@pytest.fixture
async def midtrans(aiohttp_server: Any) -> tuple[FakeMidtrans, str]:
    fake = FakeMidtrans([KEY, "Mid-server-PRODUCTION01"])
    server = await aiohttp_server(fake.app())
    return fake, str(server.make_url("")).rstrip("/")


async def test_snap_contract(midtrans: tuple[FakeMidtrans, str]) -> None:
    fake, url = midtrans
    body = {"transaction_details": {"order_id": "ORDER-1", "gross_amount": 10000}}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/sandbox/snap/v1/transactions", json=body, headers=auth("SB-Mid-server-NOPE")) as r:
            assert r.status == 401
        async with s.post(f"{url}/production/snap/v1/transactions", json=body, headers=auth(KEY)) as r:
            assert r.status == 401  # a sandbox key on the production endpoint
        async with s.post(f"{url}/sandbox/snap/v1/transactions", json=body,
                          headers={**auth(KEY), "X-Override-Notification": "http://127.0.0.1:9/a, http://[::1]:9/b"}) as r:
            assert r.status == 201
            created = await r.json()
        assert set(created) == {"token", "redirect_url"}
        async with s.post(f"{url}/sandbox/snap/v1/transactions", json=body, headers=auth(KEY)) as r:
            assert (r.status, await r.json()) == (400, {"error_messages": [
                "transaction_details.order_id has already been taken"]})
        bad = {"transaction_details": {"order_id": "bad id!", "gross_amount": 1.5}}
        async with s.post(f"{url}/sandbox/snap/v1/transactions", json=bad, headers=auth(KEY)) as r:
            assert r.status == 400 and len((await r.json())["error_messages"]) == 2
    assert fake.transactions[(KEY, "ORDER-1")].notification_urls == ["http://127.0.0.1:9/a", "http://[::1]:9/b"]


async def test_notifications_are_signed_and_only_go_to_loopback(midtrans: tuple[FakeMidtrans, str]) -> None:
    fake, url = midtrans
    body = {"transaction_details": {"order_id": "ORDER-2", "gross_amount": 10000}}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/sandbox/snap/v1/transactions", json=body,
                          headers={**auth(KEY), "X-Override-Notification": "http://10.0.0.1/hook"}) as r:
            assert r.status == 201
        async with s.post(f"{url}/_fake/notify", json={"order_id": "ORDER-2"}) as r:
            assert r.status == 400 and "loopback" in (await r.json())["error"]
    transaction = fake.transactions[(KEY, "ORDER-2")]
    payload = fake.notification(transaction, "settlement")
    assert payload["gross_amount"] == "10000.00" and payload["status_code"] == "200"
    assert payload["signature_key"] == signature("ORDER-2", "200", "10000.00", KEY)
    assert fake.notification(transaction, "settlement", forge=True)["signature_key"] != payload["signature_key"]


@pytest.fixture
async def v1(aiohttp_server: Any, midtrans: tuple[FakeMidtrans, str], tmp_path: Path) -> tuple[str, Path]:
    fake, url = midtrans
    server = await aiohttp_server(LegacyV1(open_database(tmp_path / "orders.db"), server_key=KEY,
                                           snap_url=f"{url}/sandbox/snap/v1/transactions").app())
    fake.default_notification_url = str(server.make_url("/webhooks/midtrans"))
    return str(server.make_url("")).rstrip("/"), tmp_path / "orders.db"


async def test_v1_create_pay_status(v1: tuple[str, Path], midtrans: tuple[FakeMidtrans, str]) -> None:
    url, path = v1
    _, fake_url = midtrans
    order = {"orderId": "261225AB12CD", "amount": 150000, "email": "a@b.co", "phone": "0812", "name": "Budi",
             "paymentMethod": "bca"}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/payment/create", json=order) as r:
            created = await r.json()
        assert r.status == 200 and created["success"] is True and set(created) == {"success", "paymentUrl", "token"}
        async with s.get(f"{url}/orders/261225AB12CD/status") as r:
            assert await r.json() == {"success": True, "order": {
                "id": "261225AB12CD", "status": "PENDING_PAYMENT", "totalAmount": 150000,
                "customerName": "Budi", "email": "a@b.co"}}
        async with s.post(f"{fake_url}/_fake/notify", json={"order_id": "261225AB12CD"}) as r:
            assert (await r.json())["deliveries"][0]["status"] == 200
        async with s.get(f"{url}/orders/261225AB12CD/status") as r:
            assert (await r.json())["order"]["status"] == "PAID"
        async with s.post(f"{url}/payment/create", json={"orderId": ""}) as r:
            assert r.status == 400 and (await r.json())["details"][0] == "Order ID is required"
        async with s.get(f"{url}/orders/NOPE/status") as r:
            assert r.status == 404
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT status, token IS NOT NULL FROM orders").fetchall() == [("PAID", 1)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)

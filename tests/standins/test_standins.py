"""The fake Midtrans honours the contract the project depends on (the v1 stand-in: test_legacy_v1.py)."""

from __future__ import annotations

import aiohttp
import pytest

from standins.midtrans import FakeMidtrans, signature
from tests.standins.conftest import KEY, auth


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


async def test_get_status_reports_what_midtrans_holds(midtrans: tuple[FakeMidtrans, str]) -> None:
    fake, url = midtrans
    body = {"transaction_details": {"order_id": "ORDER-3", "gross_amount": 10000}}
    status_url = f"{url}/sandbox/v2/ORDER-3/status"
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/sandbox/snap/v1/transactions", json=body, headers=auth(KEY)) as r:
            assert r.status == 201
        async with s.get(f"{url}/sandbox/v2/NOPE/status", headers=auth(KEY)) as r:
            assert (r.status, (await r.json())["status_code"]) == (200, "404")
        async with s.get(status_url, headers=auth("SB-Mid-server-NOPE")) as r:
            assert r.status == 401
        for status, fraud, code in (("pending", None, "201"), ("settlement", None, "200"), ("deny", None, "202"),
                                    ("expire", None, "202"), ("refund", None, "200"),
                                    ("capture", "challenge", "201"), ("capture", "accept", "200")):
            async with s.post(f"{url}/_fake/status", json={"order_id": "ORDER-3", "transaction_status": status,
                                                           "fraud_status": fraud}) as r:
                assert r.status == 200
            async with s.get(status_url, headers=auth(KEY)) as r:
                report = await r.json()
            assert (report["transaction_status"], report.get("fraud_status"), report["status_code"]) == \
                (status, fraud, code)
            assert report["gross_amount"] == "10000.00" and report["order_id"] == "ORDER-3"
            assert report["transaction_id"] == fake.transactions[(KEY, "ORDER-3")].transaction_id
            assert report["signature_key"] == signature("ORDER-3", code, "10000.00", KEY)
        async with s.post(f"{url}/_fake/fail", json={"api": "status", "mode": "500", "count": 1}) as r:
            assert (await r.json())["pending_failures"] == 1
        async with s.get(status_url, headers=auth(KEY)) as r:
            assert r.status == 500
        async with s.get(status_url, headers=auth(KEY)) as r:
            assert r.status == 200  # back after the one failure
        fake.fail_next("status", "hang")
        with pytest.raises(TimeoutError):
            async with s.get(status_url, headers=auth(KEY), timeout=aiohttp.ClientTimeout(total=0.5)):
                pass
    assert fake.status_calls == 2 + 7 + 3

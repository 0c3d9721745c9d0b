"""The control plane's Get Status client against the fake Midtrans: answers, unknown orders, and
every failure as StatusUnavailable with a message that holds no key."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controlplane.midtrans_answer import StatusUnavailable
from controlplane.midtrans_status import MidtransStatus
from standins.midtrans import FakeMidtrans, Transaction

KEY = "SB-Mid-server-STATUSCLIENT1"


async def test_answers_unknown_orders_and_failures(aiohttp_server: Any) -> None:
    fake = FakeMidtrans([KEY])
    fake.transactions[(KEY, "S-1")] = Transaction("S-1", 25000, KEY, "sandbox", "t", "tx-1", [],
                                                  status="capture", fraud_status="accept")
    server = await aiohttp_server(fake.app())
    client = MidtransStatus({"sandbox": str(server.make_url("/sandbox"))}, timeout_s=0.5)

    def ask(order_id: str, key: str = KEY) -> Any:
        return asyncio.to_thread(client.transaction_status, order_id, server_key=key, environment="sandbox")

    answer = await ask("S-1")
    assert (answer.transaction_status, answer.fraud_status, answer.order_status) == ("capture", "accept", "paid")
    assert answer.amount_is(25000) and not answer.amount_is(25001)
    assert await ask("S-404") is None
    for prepare, message in ((lambda: fake.fail_next("status", "500"), "Get Status answered HTTP 500"),
                             (lambda: fake.fail_next("status", "hang"), "Get Status timed out"),
                             (lambda: None, "Get Status answered HTTP 401")):
        prepare()
        with pytest.raises(StatusUnavailable, match=message) as info:
            await ask("S-1", KEY if "401" not in message else "SB-Mid-server-UNKNOWNKEY")
        assert KEY not in str(info.value)
    with pytest.raises(StatusUnavailable, match="no Midtrans Core API for environment 'staging'"):
        client.transaction_status("S-1", server_key=KEY, environment="staging")


def test_core_urls_from_the_environment_and_options() -> None:
    client = MidtransStatus.from_environment({"DUALSTACK_MIDTRANS_CORE_URL_SANDBOX": "http://127.0.0.1:1/sandbox"},
                                             overrides={"production": "http://127.0.0.1:2/production",
                                                        "sandbox": None})
    assert client.core_urls == {"sandbox": "http://127.0.0.1:1/sandbox", "production": "http://127.0.0.1:2/production"}
    assert MidtransStatus.from_environment({}).core_urls["production"] == "https://api.midtrans.com"

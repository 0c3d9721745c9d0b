"""Guessing admin tokens: throttled per tenant and client, through the real v2 app."""

from __future__ import annotations

import asyncio

from proxy.v2.throttle import FailureThrottle, client_address
from tests.fixtures.v2_stack import Stack


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_is_held_after_its_budget_and_released_as_it_refills() -> None:
    clock = Clock()
    throttle = FailureThrottle(per_client=3, per_tenant=100, window_s=30.0, clock=clock)
    starts = [throttle.failed("alpha", "10.0.0.1") for _ in range(3)]
    assert starts == [False, False, True]  # the third failure starts throttling: logged once
    assert throttle.wait_s("alpha", "10.0.0.1") > 0
    assert throttle.wait_s("alpha", "10.0.0.2") == 0  # another client is not held
    assert throttle.wait_s("beta", "10.0.0.1") == 0  # nor the same client for another tenant
    clock.now += 10.0  # one token back (3 per 30 s)
    assert throttle.wait_s("alpha", "10.0.0.1") == 0


def test_a_guesser_spread_over_many_addresses_drains_the_tenant() -> None:
    throttle = FailureThrottle(per_client=10, per_tenant=20, window_s=60.0, clock=Clock())
    for n in range(20):
        throttle.failed("alpha", f"10.0.{n}.1")
    assert throttle.wait_s("alpha", "10.9.9.9") > 0
    assert throttle.wait_s("beta", "10.9.9.9") == 0


def test_the_client_is_the_rightmost_untrusted_forwarded_address() -> None:
    def trusted(address: str) -> bool:
        return address.startswith("127.")

    # client -> nginx (127.0.0.1) -> router (127.0.0.1) -> v2: the router appends nginx's address.
    assert client_address("127.0.0.1", ["203.0.113.7, 127.0.0.1"], trusted) == "203.0.113.7"
    # A client that writes its own X-Forwarded-For gains nothing: only the hop nginx saw counts.
    assert client_address("127.0.0.1", ["1.2.3.4, 203.0.113.7, 127.0.0.1"], trusted) == "203.0.113.7"
    # From an untrusted peer the header is ignored.
    assert client_address("198.51.100.2", ["1.2.3.4"], trusted) == "198.51.100.2"
    assert client_address("127.0.0.1", ["not-an-ip"], trusted) == "127.0.0.1"


async def test_a_thousand_guesses_are_mostly_refused_before_comparing(stack: Stack) -> None:
    alpha = stack.add_tenant()
    results = await asyncio.gather(*(
        stack.request("GET", "/admin/stats", alpha, headers={"Authorization": f"Bearer guess-{n}"})
        for n in range(200)))
    statuses = [status for status, _ in results]
    assert statuses.count(401) == 10 and statuses.count(429) == 190, statuses
    status, body = await stack.request("GET", "/admin/stats", alpha,
                                       headers={"Authorization": f"Bearer {alpha.admin_token}"})
    assert status == 429 and body["error"] == "too_many_attempts"  # held, even with the right token
    assert stack.sample("dualstack_v2_admin_token_refused_total", tenant=alpha.slug, outcome="failed") == 10
    assert stack.sample("dualstack_v2_admin_token_refused_total", tenant=alpha.slug, outcome="throttled") == 191
    # Another client behind the same trusted proxy is not held back.
    status, _ = await stack.request("GET", "/admin/stats", alpha, headers={
        "Authorization": f"Bearer {alpha.admin_token}", "X-Forwarded-For": "203.0.113.9"})
    assert status == 200


async def test_a_flood_of_forged_notifications_is_throttled_and_stores_a_bounded_amount(stack: Stack) -> None:
    """200 forged notifications from one client used to grow payment_events by 53 MB in 3 s."""
    import psycopg

    alpha = stack.add_tenant()
    body = {"order_id": "X", "status_code": "200", "gross_amount": "1.00", "signature_key": "forged",
            "padding": "z" * 60_000}
    statuses = [status for status, _ in await asyncio.gather(*(
        stack.request("POST", "/webhooks/midtrans", alpha, json=body) for _ in range(200)))]
    # 20 a minute, refilled continuously: a slow machine may let a token or two back in during the flood.
    refused, throttled = statuses.count(403), statuses.count(429)
    assert refused + throttled == 200 and 20 <= refused <= 30, statuses
    with psycopg.connect(stack.database.admin_url) as conn:
        stored = conn.execute("SELECT count(*), coalesce(sum(pg_column_size(e.payload)), 0) FROM payments.payment_events e "
                              "JOIN payments.tenants t ON t.id = e.tenant_id WHERE t.slug = %s",
                              (alpha.slug,)).fetchone()
    assert stored is not None and stored[0] == refused and stored[1] < refused * 4096, stored
    assert stack.sample("dualstack_v2_invalid_notifications_throttled_total", tenant=alpha.slug) == throttled

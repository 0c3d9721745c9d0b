"""Through the real stack: the router (keys read from v2's tenant store through its own role), the v1
stand-in, the real v2 and the fake Midtrans. A forged notification, a genuine one re-sent with its
status changed, and either of them on a path a backend also takes for the notification endpoint,
reach neither backend: neither store changes and both orders stay pending. The genuine one is applied.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import psycopg
from yarl import URL

from proxy.router import keys
from tests.conftest import wait_until
from tests.fixtures.cutover_world import World
from tests.fixtures.v2_stack import Tenant

PATHS = ["/webhooks/midtrans", "/webhooks/midtrans/", "/Webhooks/Midtrans", "//webhooks/midtrans",
         "/webhooks/%6Didtrans"]


async def post(w: World, tenant: Tenant, path: str, payload: dict[str, Any]) -> int:
    async with aiohttp.ClientSession() as session, session.post(
        URL(f"{w.router.url}{path}", encoded=True), data=json.dumps(payload),
        headers={"Host": f"{tenant.slug}.agentbar.ai", "Content-Type": "application/json"}) as response:
        await response.read()
        return response.status


async def create(w: World, tenant: Tenant, order_id: str) -> None:
    body = {"orderId": order_id, "amount": 150000, "email": "budi@example.com", "phone": "0812", "name": "Budi",
            "paymentMethod": "bca"}
    async with aiohttp.ClientSession() as session, session.post(
            f"{w.router.url}/payment/create", json=body, headers={"Host": f"{tenant.slug}.agentbar.ai"}
    ) as response:
        assert response.status == 200, await response.text()


def on_v1(w: World, order_id: str) -> str | None:
    return w.v1_statuses().get(order_id)


def on_v2(w: World, order_id: str) -> tuple[str | None, int]:
    """The order's status in v2 (None: v2 does not hold it) and how many notifications v2 recorded for it."""
    with psycopg.connect(w.stack.database.admin_url) as conn:
        row = conn.execute("SELECT payment_status FROM payments.orders WHERE order_id = %s", (order_id,)).fetchone()
        events = conn.execute("SELECT count(*) FROM payments.payment_events WHERE order_id = %s",
                              (order_id,)).fetchone()
    return (None if row is None else str(row[0])), (events[0] if events else 0)


async def test_forged_stolen_and_path_variant_notifications_reach_no_backend_and_the_genuine_one_applies(
    world: World,
) -> None:
    legacy, fresh = world.tenant, world.stack.add_tenant()  # on v1 (which holds it), and on v2
    text = world.router.config_path.read_text()
    world.router.config_path.write_text(text + f"  {fresh.slug}:\n    backend: v2\n")
    await wait_until(lambda: fresh.slug in world.router.app[keys.STATE].table.config.tenants)
    orders = {legacy.slug: "NS-V1-1", fresh.slug: "NS-V2-1"}
    for tenant in (legacy, fresh):
        await create(world, tenant, orders[tenant.slug])
    before = {"v1": on_v1(world, orders[legacy.slug]), "v2": on_v2(world, orders[fresh.slug])}
    assert before == {"v1": "PENDING_PAYMENT", "v2": ("pending", 0)}

    midtrans = world.stack.midtrans
    for tenant in (legacy, fresh):
        transaction = midtrans.set_status(orders[tenant.slug], "pending", server_key=tenant.server_key)
        forged = midtrans.notification(transaction, "settlement", forge=True)
        pending = midtrans.notification(transaction, "pending")  # genuine: Midtrans signed it (201)
        stolen = {**pending, "transaction_status": "settlement"}  # v1 would mark the order paid
        answers = {(kind, path): await post(world, tenant, path, body)
                   for kind, body in (("forged", forged), ("stolen", stolen)) for path in PATHS}
        assert set(answers.values()) == {403}, answers
        refused = {reason: world.router.sample("dualstack_notifications_refused_total", tenant=tenant.slug,
                                               reason=reason) for reason in ("invalid_signature", "inconsistent_status")}
        assert refused == {"invalid_signature": len(PATHS), "inconsistent_status": len(PATHS)}

    # Nothing reached a backend: neither store changed, and no backend answered a notification.
    assert on_v1(world, orders[legacy.slug]) == "PENDING_PAYMENT" and on_v1(world, orders[fresh.slug]) is None
    assert on_v2(world, orders[fresh.slug]) == ("pending", 0) and on_v2(world, orders[legacy.slug]) == (None, 0)
    for tenant in (legacy, fresh):
        for backend in ("v1", "v2"):
            for code_class in ("2xx", "4xx", "5xx"):
                assert not world.router.sample("dualstack_requests_total", tenant=tenant.slug, backend=backend,
                                               code_class=code_class, route="webhook")

    # The genuine settlement, as Midtrans sends it, is applied where each order lives.
    for tenant in (legacy, fresh):
        transaction = midtrans.set_status(orders[tenant.slug], "settlement", server_key=tenant.server_key)
        assert await post(world, tenant, "/webhooks/midtrans", midtrans.notification(transaction, "settlement")) == 200
    assert on_v1(world, orders[legacy.slug]) == "PAID"
    assert on_v2(world, orders[fresh.slug]) == ("paid", 1)



async def test_v1_applies_a_forged_notification_which_the_router_refuses(world: World) -> None:
    """v1 checks no signature at all (its flaw): only the router stands between a forger and v1's store."""
    await create(world, world.tenant, "NS-V1-FORGED")
    transaction = world.stack.midtrans.set_status("NS-V1-FORGED", "pending", server_key=world.tenant.server_key)
    forged = world.stack.midtrans.notification(transaction, "settlement", forge=True)
    assert await post(world, world.tenant, "/webhooks/midtrans", forged) == 403
    assert on_v1(world, "NS-V1-FORGED") == "PENDING_PAYMENT"
    async with aiohttp.ClientSession() as session, session.post(f"{world.v1_url}/webhooks/midtrans",
                                                                json=forged) as response:
        assert (response.status, await response.text()) == (200, "OK")
    assert on_v1(world, "NS-V1-FORGED") == "PAID"


async def test_a_challenged_or_denied_capture_never_reaches_v1_and_its_order_stays_pending(world: World) -> None:
    """v1 marks every capture paid; the router answers Midtrans as v1 would and keeps these from it."""
    midtrans = world.stack.midtrans
    for fraud in ("challenge", "deny"):
        order_id = f"NS-V1-CAP-{fraud.upper()}"
        await create(world, world.tenant, order_id)
        transaction = midtrans.set_status(order_id, "capture", fraud_status=fraud, server_key=world.tenant.server_key)
        genuine = midtrans.notification(transaction, "capture", fraud_status=fraud)
        assert await post(world, world.tenant, "/webhooks/midtrans", genuine) == 200
        assert on_v1(world, order_id) == "PENDING_PAYMENT"
    assert world.router.sample("dualstack_notifications_withheld_total", tenant=world.tenant.slug,
                               reason="v1_would_misapply") == 2
    # What the router keeps from it: v1, sent one directly, invents the payment.
    async with aiohttp.ClientSession() as session, session.post(f"{world.v1_url}/webhooks/midtrans",
                                                                json=genuine) as response:
        assert response.status == 200
    assert on_v1(world, "NS-V1-CAP-DENY") == "PAID"

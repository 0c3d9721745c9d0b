"""Where the buyer lands after paying: each tenant's finish URL, sent as Snap's `callbacks.finish`,
from templates that were checked before any create could need them."""

from __future__ import annotations

import psycopg

from tests.fixtures.v2_stack import Stack


async def test_each_tenant_sends_its_buyers_to_its_own_finish_url(stack: Stack) -> None:
    default = stack.add_tenant()
    own = stack.add_tenant()
    stack.admin.set(own.slug, finish_url="https://pay.{slug}.example/done/{order_id}?from={base_domain}")
    assert (await stack.create(default, "FIN-1"))[0] == 200
    assert (await stack.create(own, "FIN-2"))[0] == 200
    sent = stack.midtrans.transactions[(default.server_key, "FIN-1")].callbacks
    thank_you = f"https://{default.slug}.agentbar.ai/thank-you?order_id=FIN-1"  # its own host's page
    assert sent == {"finish": thank_you, "error": thank_you}
    own_sent = stack.midtrans.transactions[(own.server_key, "FIN-2")].callbacks
    assert own_sent["finish"] == f"https://pay.{own.slug}.example/done/FIN-2?from=agentbar.ai"


async def test_a_finish_url_that_does_not_parse_never_fails_a_create(stack: Stack) -> None:
    """`tenant set` refuses such a URL; one written by hand into the row falls back to the service's."""
    tenant = stack.add_tenant()
    with psycopg.connect(stack.database.admin_url) as conn:
        conn.execute("UPDATE payments.tenants SET finish_url = 'https://x.example/{order_id' WHERE slug = %s",
                     (tenant.slug,))
    status, body = await stack.create(tenant, "FIN-BAD")
    assert status == 200 and body["success"] is True
    sent = stack.midtrans.transactions[(tenant.server_key, "FIN-BAD")].callbacks
    assert sent["finish"] == f"https://{tenant.slug}.agentbar.ai/thank-you?order_id=FIN-BAD"

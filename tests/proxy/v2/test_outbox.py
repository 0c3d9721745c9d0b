"""The outbox against a real SMTP relay: once per order and template across retries, restarts and
several v2 workers; temporary failures retried, permanent ones dead-lettered; never in a request's way."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import psycopg
import pytest
from prometheus_client import CollectorRegistry

from proxy.v2 import keys
from proxy.v2.app import create_v2_app
from proxy.v2.outbox import Outbox
from tests.conftest import wait_until
from tests.fixtures.v2_stack import TEST_DELIVERY, Stack, Tenant, stack_settings


async def sweep_until(stack: Stack, tenant: Tenant, done: Callable[[], bool], outbox: Outbox | None = None) -> None:
    """Drive the outbox (its own code) until `done`; the bound only stops a broken test hanging."""
    for _ in range(250):
        if done():
            return
        await stack.sweep(tenant, outbox)
        await asyncio.sleep(0.02)
    raise AssertionError(f"not reached: {stack.outbox_rows(tenant)}")


def statuses(stack: Stack, tenant: Tenant) -> list[str]:
    return [row[2] for row in stack.outbox_rows(tenant)]


async def test_a_relay_that_answers_421_then_accepts_delivers_one_email(stack: Stack) -> None:
    tenant = stack.add_tenant()
    stack.relay.handler.answers = ["421 4.3.2 Service not available, try again later"]
    await stack.create(tenant, "R421-1")
    await sweep_until(stack, tenant, lambda: statuses(stack, tenant) == ["sent"])
    assert len(stack.relay.to("R421-1")) == 1  # one email, not two
    assert stack.relay.handler.data_commands == 2  # refused once, accepted once
    assert stack.outbox_rows(tenant)[0][3] == 2  # attempts
    assert stack.sample("dualstack_v2_emails_failed_total", tenant=tenant.slug, kind="temporary") == 1
    assert stack.sample("dualstack_v2_emails_sent_total", tenant=tenant.slug, template="order_created") == 1
    for _ in range(3):  # further sweeps (retries, other workers, restarts) send nothing more
        await stack.sweep(tenant)
    assert len(stack.relay.to("R421-1")) == 1


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_a_relay_that_answers_550_dead_letters_with_the_reason(stack: Stack, stage: str) -> None:
    tenant = stack.add_tenant()
    answer = "550 5.1.1 <buyer@example.com>: mailbox unavailable"
    if stage == "rcpt":
        stack.relay.handler.rcpt_answers = [answer]
    else:
        stack.relay.handler.answers = [answer]
    await stack.create(tenant, "R550-1")
    await sweep_until(stack, tenant, lambda: statuses(stack, tenant) == ["dead"])
    _, _, _, attempts, reason = stack.outbox_rows(tenant)[0]
    assert attempts == 1 and "550" in reason and "mailbox unavailable" in reason
    assert stack.relay.received == []
    assert stack.sample("dualstack_v2_emails_dead_lettered_total", tenant=tenant.slug) == 1
    await stack.sweep(tenant)
    assert stack.outbox_rows(tenant)[0][2:4] == ("dead", 1)  # never tried again by itself
    assert stack.sample("dualstack_v2_outbox_dead", tenant=tenant.slug) == 1


async def test_an_unreachable_relay_never_fails_a_webhook_and_gives_up_after_max_attempts(free_port: Callable[[], int], stack: Stack) -> None:
    tenant = stack.add_tenant(smtp_port=free_port())  # nothing listens there: connection refused
    assert (await stack.create(tenant, "DOWN-1"))[0] == 200
    deliveries = await stack.notify("DOWN-1", transaction_status="settlement")
    assert [(d["status"], d["body"]) for d in deliveries] == [(200, "OK")]
    await sweep_until(stack, tenant, lambda: statuses(stack, tenant) == ["dead", "dead"])
    for _, _, _, attempts, reason in stack.outbox_rows(tenant):
        assert attempts == 3 and reason.startswith("gave up after 3 attempts: relay 127.0.0.1:")
    assert stack.sample("dualstack_v2_emails_failed_total", tenant=tenant.slug, kind="temporary") == 6


async def test_when_the_relay_is_down_the_other_emails_wait_untried(free_port: Callable[[], int], stack: Stack) -> None:
    tenant = stack.add_tenant(smtp_host=None)  # rows pile up while there is no relay
    for n in range(3):
        await stack.create(tenant, f"WAIT-{n}")
    await stack.outbox.idle()  # the worker's own sweep for those creates is over: only the test's runs now
    stack.admin.set(tenant.slug, smtp_host="127.0.0.1", smtp_port=free_port())
    await stack.sweep(tenant)
    assert sorted(row[3] for row in stack.outbox_rows(tenant)) == [0, 0, 1]  # one tried, two released
    assert statuses(stack, tenant) == ["pending"] * 3


@pytest.fixture
async def hung_relay() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """Accepts connections and never says a word (a relay that hangs)."""
    connections: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], connections
    server.close()  # first: no connection is accepted after the ones aborted below
    for writer in connections:
        writer.transport.abort()
    await server.wait_closed()
    for _ in range(3):  # an aborted transport closes its socket on a later turn (Server.wait_closed may not yield)
        await asyncio.sleep(0)


async def test_a_hung_relay_holds_no_database_connection_and_no_webhook_waits_for_it(
        free_port: Callable[[], int], stack: Stack, aiohttp_server: Any, hung_relay: tuple[int, list[asyncio.StreamWriter]]) -> None:
    port, connections = hung_relay
    # The stack's own worker sweeps every tenant once as it starts: let it finish before this tenant exists,
    # or it may claim this tenant's second email (its sweep lists the tenants, then drains them in turn).
    await stack.outbox.idle()
    tenant = stack.add_tenant(smtp_port=port)
    # One database connection for everything: were it held during SMTP, the webhook would wait for it.
    v2_port = free_port()
    # The relay hangs longer than this test lasts, however slow the machine (the sender's own bound is
    # send_timeout_s: past it the row would be retried and the next one claimed).
    hang = dataclasses.replace(TEST_DELIVERY, send_timeout_s=300.0, lease_s=600.0)
    app = create_v2_app(stack_settings(stack.database, stack.midtrans_server, v2_port, pool_max_size=1,
                                       delivery=hang))
    server = await aiohttp_server(app, port=v2_port)
    async with aiohttp.ClientSession() as session:
        body = {"orderId": "HUNG-1", "amount": 1000, "email": "a@b.co", "phone": "1", "name": "A"}
        async with session.post(server.make_url(f"/payment/create?tenant={tenant.slug}"), json=body) as response:
            assert response.status == 200
        await wait_until(lambda: len(connections) == 1)  # the worker is inside the SMTP conversation
        await wait_until(lambda: statuses(stack, tenant) == ["sending"])  # claimed, committed
        transaction = stack.midtrans.set_status("HUNG-1", "settlement", server_key=tenant.server_key)
        payload = stack.midtrans.notification(transaction, "settlement")
        async with session.post(server.make_url(f"/webhooks/midtrans?tenant={tenant.slug}"), json=payload) as response:
            assert (response.status, await response.text()) == (200, "OK")
        async with session.get(server.make_url(f"/orders/HUNG-1/status?tenant={tenant.slug}")) as response:
            assert (await response.json())["order"]["status"] == "PAID"
    assert statuses(stack, tenant) == ["sending", "pending"]  # the first still hung; the second queued


async def test_a_row_whose_worker_died_mid_send_is_sent_once_after_its_lease(stack: Stack) -> None:
    tenant = stack.add_tenant(smtp_host=None)
    await stack.create(tenant, "LEASE-1")
    await stack.create(tenant, "LEASE-2")
    with psycopg.connect(stack.database.admin_url) as conn:  # two dead workers' claims
        conn.execute("UPDATE payments.notification_outbox SET status = 'sending', attempts = 1, "
                     "claim_id = gen_random_uuid(), next_attempt_at = now() + CASE order_id "
                     "WHEN 'LEASE-1' THEN interval '-1 second' ELSE interval '1 hour' END WHERE tenant_id = %s",
                     (tenant.id,))
    stack.admin.set(tenant.slug, smtp_host="127.0.0.1")  # now the relay is there (port: the stack's)
    await stack.sweep(tenant)  # v2's own worker may be the one sending LEASE-1: wait for whichever does
    await wait_until(lambda: [row[:4] for row in stack.outbox_rows(tenant)] == [
        ("LEASE-1", "order_created", "sent", 2), ("LEASE-2", "order_created", "sending", 1)])
    assert len(stack.relay.to("LEASE-1")) == 1 and stack.relay.to("LEASE-2") == []  # its lease still runs


async def test_fifty_settlements_across_two_workers_send_fifty_payment_emails(
        free_port: Callable[[], int], stack: Stack, aiohttp_server: Any) -> None:
    tenant = stack.add_tenant()
    other_port = free_port()
    other = create_v2_app(stack_settings(stack.database, stack.midtrans_server, other_port),
                          registry=CollectorRegistry())
    other_server = await aiohttp_server(other, port=other_port)
    workers = [stack.v2, other_server]
    orders = [f"MANY-{n:02d}" for n in range(50)]
    async with aiohttp.ClientSession() as session:

        async def post(server: Any, path: str, body: dict[str, Any]) -> int:
            async with session.post(server.make_url(f"{path}?tenant={tenant.slug}"), json=body) as response:
                return response.status

        created = await asyncio.gather(*(
            post(workers[n % 2], "/payment/create", {"orderId": order, "amount": 1000 + n, "email": f"c{n}@x.co",
                                                     "phone": "1", "name": f"C{n}"})
            for n, order in enumerate(orders)))
        assert created == [200] * 50
        notifications = [stack.midtrans.notification(
            stack.midtrans.set_status(order, "settlement", server_key=tenant.server_key), "settlement")
            for order in orders]
        # Every settlement wakes its worker; both also sweep at the same time, as after a restart.
        answers, *_ = await asyncio.gather(
            asyncio.gather(*(post(workers[(n + 1) % 2], "/webhooks/midtrans", payload)
                             for n, payload in enumerate(notifications))),
            *(stack.sweep(tenant, app[keys.V2_OUTBOX]) for app in (stack.app, other) for _ in range(3)))
    assert answers == [200] * 50
    both: list[Outbox] = [stack.app[keys.V2_OUTBOX], other[keys.V2_OUTBOX]]
    await sweep_until(stack, tenant, lambda: statuses(stack, tenant) == ["sent"] * 100, both[1])
    ids = Counter(str(m["Message-ID"]) for m in stack.relay.received if tenant.slug in str(m["Message-ID"]))
    assert sum(1 for i in ids if i.startswith("<payment_confirmation.")) == 50
    assert sum(1 for i in ids if i.startswith("<order_created.")) == 50
    assert set(ids.values()) == {1}  # every order, every template: exactly once


async def test_a_tenant_without_a_relay_is_reported_at_start_up_and_sent_once_configured(
        free_port: Callable[[], int], stack: Stack, aiohttp_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    tenant = stack.add_tenant(smtp_host=None)
    no_sender = stack.add_tenant(email_from=None)
    credential = stack.add_tenant(smtp_security="starttls", smtp_credential="shared-relay")
    await stack.create(tenant, "NORELAY-1")
    caplog.set_level(logging.INFO, logger="proxy.v2.outbox")
    registry = CollectorRegistry()
    port = free_port()
    await aiohttp_server(create_v2_app(stack_settings(stack.database, stack.midtrans_server, port),
                                       registry=registry, environ={}), port=port)

    def said(slug: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if f"tenant {slug}:" in r.getMessage()]

    # The new worker's start-up sweep: a gauge and a log line for each tenant that cannot send.
    await wait_until(lambda: registry.get_sample_value("dualstack_v2_email_relay_ready", {"tenant": tenant.slug}) == 0)
    assert f"tenant {tenant.slug}: emails cannot be sent: no SMTP relay (`dualstack tenant set {tenant.slug} " \
           "--smtp-host HOST ...`); they wait in the outbox" in said(tenant.slug)
    assert "no sender address" in said(no_sender.slug)[-1]
    assert said(credential.slug)[-1] == (
        f"tenant {credential.slug}: emails cannot be sent: credential shared-relay: DUALSTACK_SMTP_USERNAME_SHARED_RELAY "
        "and DUALSTACK_SMTP_PASSWORD_SHARED_RELAY must be set in v2's environment file; they wait in the outbox")
    assert statuses(stack, tenant) == ["pending"]
    stack.admin.set(tenant.slug, smtp_host="127.0.0.1", smtp_port=stack.relay.port, smtp_security="none")
    await sweep_until(stack, tenant, lambda: statuses(stack, tenant) == ["sent"])
    assert len(stack.relay.to("NORELAY-1")) == 1
    assert stack.sample("dualstack_v2_email_relay_ready", tenant=tenant.slug) == 1
    assert stack.sample("dualstack_v2_outbox_unsent", tenant=tenant.slug) == 0


async def test_the_oldest_unsent_email_is_exported_per_tenant(stack: Stack) -> None:
    tenant = stack.add_tenant(smtp_host=None)
    await stack.create(tenant, "AGE-1")
    with psycopg.connect(stack.database.admin_url) as conn:
        conn.execute("UPDATE payments.notification_outbox SET created_at = now() - interval '20 minutes' "
                     "WHERE tenant_id = %s", (tenant.id,))
    await stack.sweep(tenant)
    assert 1200 <= stack.sample("dualstack_v2_outbox_oldest_unsent_age_seconds", tenant=tenant.slug) < 1300
    assert stack.sample("dualstack_v2_outbox_unsent", tenant=tenant.slug) == 1


async def test_metrics_are_served_on_their_own_listener_never_on_the_service(stack: Stack, aiohttp_server: Any) -> None:
    from proxy.v2.admin import create_metrics_app

    tenant = stack.add_tenant()
    await stack.create(tenant, "MET-1")
    await wait_until(lambda: statuses(stack, tenant) == ["sent"])
    metrics = await aiohttp_server(create_metrics_app(stack.registry))
    async with aiohttp.ClientSession() as session:
        async with session.get(metrics.make_url("/metrics")) as response:
            text = await response.text()
        async with session.get(stack.v2.make_url(f"/metrics?tenant={tenant.slug}")) as response:
            assert response.status == 404
    assert f'dualstack_v2_emails_sent_total{{template="order_created",tenant="{tenant.slug}"}} 1.0' in text

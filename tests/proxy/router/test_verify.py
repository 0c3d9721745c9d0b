"""The router verifies Midtrans notifications before any backend sees one: v1, which applies anything,
is shielded, and a forgery delivered to v1 can no longer reach v2 through the next sync."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from proxy.router.notification_keys import FileKeyStore
from proxy.serving.signature import notification_signature
from tests.conftest import RouterFactory, Upstream, keys_file, routing_yaml

KEYS = {"legacy": "SB-Mid-server-LEGACY-0001", "fresh": "SB-Mid-server-FRESH-0002"}


def notification(order_id: str, key: str, *, status: str = "settlement", code: str = "200",
                 fraud: str | None = None) -> dict[str, str]:
    gross = "10000.00"
    return {"order_id": order_id, "status_code": code, "gross_amount": gross, "transaction_status": status,
            "transaction_id": f"tx-{order_id}", "signature_key": notification_signature(order_id, code, gross, key),
            **({} if fraud is None else {"fraud_status": fraud})}


async def post(url: str, tenant: str, body: bytes, path: str = "/webhooks/midtrans") -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(
        URL(f"{url}{path}", encoded=True), data=body,  # the path exactly as given: no client clean-up
        headers={"Host": f"{tenant}.agentbar.ai", "Content-Type": "application/json"}) as response:
        return response.status, await response.text()


def webhooks_seen(upstream: Upstream) -> int:
    return sum(1 for s in upstream.seen if s.path_qs.startswith("/webhooks/midtrans"))


@pytest.mark.parametrize("tenant", ["legacy", "fresh"])  # one on v1, one on v2
async def test_a_forged_notification_reaches_no_backend(upstreams: dict[str, Upstream], make_router: RouterFactory,
                                                         tmp_path: Path, tenant: str) -> None:
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, "legacy: {backend: v1}\nfresh: {backend: v2}\n",
                        v1_tenants=["legacy"])
    router = await make_router(yaml, notification_keys=FileKeyStore.load(keys_file(tmp_path / "midtrans.keys", KEYS)))
    forged = [
        json.dumps(notification("ORD-1", "SB-Mid-server-WRONG")).encode(),  # signed with another key
        json.dumps({**notification("ORD-1", KEYS[tenant]), "gross_amount": "1.00"}).encode(),  # altered
        b'{"order_id": "ORD-1"}',  # unsigned
        b"[" * 5000 + b"]" * 5000,  # not an object (and deep)
        b"not json",
    ]
    answers = [await post(router.url, tenant, body) for body in forged]
    assert [status for status, _ in answers] == [403, 403, 403, 400, 400], answers
    assert webhooks_seen(upstreams["v1"]) == 0 and webhooks_seen(upstreams["v2"]) == 0
    assert router.sample("dualstack_notifications_refused_total", tenant=tenant, reason="invalid_signature") == 3
    assert router.sample("dualstack_notifications_refused_total", tenant=tenant, reason="malformed") == 2
    # Refusals are the router's own answers: they count against no backend.
    assert router.sample("dualstack_requests_total", tenant=tenant, backend="v1", code_class="4xx") in (None, 0)
    assert router.sample("dualstack_requests_total", tenant=tenant, backend="v2", code_class="4xx") in (None, 0)

    status, _ = await post(router.url, tenant, json.dumps(notification("ORD-1", KEYS[tenant])).encode())
    assert status == 200  # the genuine one goes on (to both backends when v1 holds the tenant)
    assert webhooks_seen(upstreams["v2"]) + webhooks_seen(upstreams["v1"]) >= 1


async def test_a_tenant_without_a_key_is_held_for_midtrans_to_retry(
    upstreams: dict[str, Upstream], make_router: RouterFactory, tmp_path: Path
) -> None:
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, "stranger: {backend: v2}\n", v1_tenants=[])
    router = await make_router(yaml, notification_keys=FileKeyStore.load(keys_file(tmp_path / "midtrans.keys", KEYS)))
    status, _ = await post(router.url, "stranger", json.dumps(notification("ORD-2", "anything")).encode())
    assert status == 503 and webhooks_seen(upstreams["v2"]) == 0
    assert router.sample("dualstack_notifications_refused_total", tenant="stranger", reason="no_key") == 1


# Paths v1 (Express: case-insensitive, a trailing slash allowed) or v2 (aiohttp: percent-escapes decoded)
# route to their notification handler, or a proxy on the way turns into that path.
VARIANTS = ["/webhooks/midtrans/", "/Webhooks/Midtrans", "//webhooks/midtrans", "/webhooks//midtrans",
            "/webhooks/%6Didtrans", "/WEBHOOKS/MIDTRANS/", "/x/../webhooks/midtrans", "/webhooks/midtrans%2F",
            "/webhooks/midtrans?tenant=legacy"]


async def _both_tenants(upstreams: dict[str, Upstream], make_router: RouterFactory, tmp_path: Path) -> Any:
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, "legacy: {backend: v1}\nfresh: {backend: v2}\n",
                        v1_tenants=["legacy"])
    return await make_router(yaml, notification_keys=FileKeyStore.load(keys_file(tmp_path / "midtrans.keys", KEYS)))


@pytest.mark.parametrize("tenant", ["legacy", "fresh"])
async def test_every_path_a_backend_takes_for_a_notification_is_verified(
    upstreams: dict[str, Upstream], make_router: RouterFactory, tmp_path: Path, tenant: str
) -> None:
    router = await _both_tenants(upstreams, make_router, tmp_path)
    forged = json.dumps(notification("ORD-3", "SB-Mid-server-WRONG")).encode()
    answers = {path: (await post(router.url, tenant, forged, path))[0] for path in VARIANTS}
    assert answers == dict.fromkeys(VARIANTS, 403)
    assert upstreams["v1"].seen == [] and upstreams["v2"].seen == []
    assert router.sample("dualstack_notifications_refused_total", tenant=tenant,
                         reason="invalid_signature") == len(VARIANTS)
    # A genuine one on such a path goes on as it came (the backend decides what the path means).
    status, _ = await post(router.url, tenant, json.dumps(notification("ORD-3", KEYS[tenant])).encode(),
                           "/Webhooks/Midtrans/")
    assert status == 200 and {s.raw_path for s in upstreams["v1"].seen + upstreams["v2"].seen} == {
        "/Webhooks/Midtrans/"}
    backend = "v1" if tenant == "legacy" else "v2"  # counted as the notification it is
    assert router.sample("dualstack_requests_total", tenant=tenant, backend=backend, code_class="2xx",
                         route="webhook") == 1


@pytest.mark.parametrize("tenant", ["legacy", "fresh"])
async def test_a_genuine_notification_with_its_status_changed_reaches_no_backend(
    upstreams: dict[str, Upstream], make_router: RouterFactory, tmp_path: Path, tenant: str
) -> None:
    router = await _both_tenants(upstreams, make_router, tmp_path)
    pending = notification("ORD-4", KEYS[tenant], status="pending", code="201")  # genuine, signed by Midtrans
    settled = notification("ORD-5", KEYS[tenant])
    stolen = [{**pending, "transaction_status": "settlement"},  # v1 would mark it paid
              {**pending, "transaction_status": "capture"},
              {**settled, "transaction_status": "deny"}]  # a paid order made failed
    answers = [await post(router.url, tenant, json.dumps(body).encode()) for body in stolen]
    assert [status for status, _ in answers] == [403, 403, 403], answers
    assert all("inconsistent_status" in text for _, text in answers)
    assert upstreams["v1"].seen == [] and upstreams["v2"].seen == []
    assert router.sample("dualstack_notifications_refused_total", tenant=tenant, reason="inconsistent_status") == 3
    status, _ = await post(router.url, tenant, json.dumps(pending).encode())
    assert status == 200  # the genuine pending one, as Midtrans sent it


async def test_a_router_without_a_key_source_refuses_every_notification(
    upstreams: dict[str, Upstream], make_router: RouterFactory
) -> None:
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, "legacy: {backend: v1}\nfresh: {backend: v2}\n",
                        v1_tenants=["legacy"])
    router = await make_router(yaml, notification_keys=None)
    for tenant in ("legacy", "fresh"):
        status, text = await post(router.url, tenant, json.dumps(notification("ORD-6", KEYS[tenant])).encode())
        assert status == 503 and "no_key_source" in text  # Midtrans retries until the router has keys
        assert router.sample("dualstack_notifications_refused_total", tenant=tenant, reason="no_key_source") == 1
    assert upstreams["v1"].seen == [] and upstreams["v2"].seen == []
    async with aiohttp.ClientSession() as session, session.get(
            f"{router.url}/orders/ORD-6/status", headers={"Host": "fresh.agentbar.ai"}) as response:
        assert response.status == 200  # everything else is served as before


# Genuine, as Midtrans signs them: a challenged capture (pending, 201) and a denied one (failed, 202).
MISAPPLIED = [("challenge", "201"), ("deny", "202")]


def misapplied(order_id: str, key: str) -> list[bytes]:
    return [json.dumps(notification(f"{order_id}-{fraud}", key, status="capture", code=code, fraud=fraud)).encode()
            for fraud, code in MISAPPLIED]


@pytest.mark.parametrize("webhooks", ["both", "primary"])
async def test_a_capture_v1_would_mark_paid_never_reaches_v1_for_a_tenant_v1_serves(
    upstreams: dict[str, Upstream], make_router: RouterFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    webhooks: str,
) -> None:
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, f"legacy: {{backend: v1, webhooks: {webhooks}}}\n")
    router = await make_router(yaml, notification_keys=FileKeyStore.load(keys_file(tmp_path / "midtrans.keys", KEYS)))
    with caplog.at_level(logging.WARNING, logger="proxy.router.verify"):
        answers = [await post(router.url, "legacy", body) for body in misapplied("ORD-7", KEYS["legacy"])]
    assert answers == [(200, "OK")] * 2  # as v1 answers: Midtrans does not resend what v1 must never see
    assert webhooks_seen(upstreams["v1"]) == 0
    copies = 2 if webhooks == "both" else 0  # v2 applies them to what it holds (it reads them right)
    assert webhooks_seen(upstreams["v2"]) == copies
    assert router.sample("dualstack_webhook_copies_total", tenant="legacy", backend="v2", result="accepted") == copies
    assert router.sample("dualstack_notifications_withheld_total", tenant="legacy", reason="v1_would_misapply") == 2
    # The router's own answer: it counts against no backend.
    assert router.sample("dualstack_router_outcomes_total", tenant="legacy", outcome="notification_withheld") == 2
    assert not router.sample("dualstack_requests_total", tenant="legacy")
    # Logged once a minute per tenant, with the order id for ops to reconcile on v1 (the signature never).
    lines = [r.getMessage() for r in caplog.records if "kept from v1" in r.getMessage()]
    assert len(lines) == 1 and "ORD-7-challenge" in lines[0] and "primary delivery" in lines[0]
    assert not any(KEYS["legacy"] in r.getMessage() for r in caplog.records)

    accepted = notification("ORD-8", KEYS["legacy"], status="capture", fraud="accept")
    status, _ = await post(router.url, "legacy", json.dumps(accepted).encode())
    assert status == 200 and webhooks_seen(upstreams["v1"]) == 1  # an accepted capture is paid: v1 gets it


async def test_a_capture_v1_would_mark_paid_reaches_v2_only_for_a_tenant_v2_serves(
    upstreams: dict[str, Upstream], make_router: RouterFactory, tmp_path: Path
) -> None:
    # v1 holds fresh's older orders, so notifications are copied to it: all but these.
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, "fresh: {backend: v2}\n")
    router = await make_router(yaml, notification_keys=FileKeyStore.load(keys_file(tmp_path / "midtrans.keys", KEYS)))
    answers = [await post(router.url, "fresh", body) for body in misapplied("ORD-9", KEYS["fresh"])]
    assert [status for status, _ in answers] == [200, 200]
    assert all(json.loads(text)["backend"] == "v2" for _, text in answers)  # v2's own answer, unchanged
    assert webhooks_seen(upstreams["v2"]) == 2 and webhooks_seen(upstreams["v1"]) == 0
    assert router.sample("dualstack_notifications_withheld_total", tenant="fresh", reason="v1_would_misapply") == 2
    assert router.sample("dualstack_requests_total", tenant="fresh", backend="v2", code_class="2xx") == 2
    assert not router.sample("dualstack_webhook_copies_total", tenant="fresh")

    status, _ = await post(router.url, "fresh", json.dumps(notification("ORD-10", KEYS["fresh"])).encode())
    assert status == 200 and webhooks_seen(upstreams["v1"]) == 1  # a settlement is copied to v1 as before

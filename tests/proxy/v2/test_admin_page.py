"""v1's admin page on v2 (proxy/v2/admin_page.py), called as the page calls it, against the real v2:
sign-in per tenant, short-lived HS256 tokens, the order list in v1's shape, status changes checked
against the status-precedence rule and recorded with the admin as actor."""

from __future__ import annotations

import base64
import json
from typing import Any

import psycopg

from controlplane.admin_password import verify_password
from tests.fixtures.v2_stack import Stack, Tenant

PASSWORD = "correct horse battery"


def _login(stack: Stack, tenant: Tenant, user: str = "admin") -> Tenant:
    stack.admin.set_admin_login(tenant.slug, user, PASSWORD)
    return tenant


async def _sign_in(stack: Stack, tenant: Tenant, user: str = "admin", password: str = PASSWORD) -> tuple[int, Any]:
    return await stack.request("POST", "/admin/login", tenant, json={"username": user, "password": password})


async def _token(stack: Stack, tenant: Tenant, user: str = "admin") -> str:
    status, body = await _sign_in(stack, tenant, user)
    assert status == 200, body
    return str(body["token"])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _segment(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _events(stack: Stack, tenant: Tenant, order_id: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(stack.database.admin_url) as conn:
        return conn.execute(
            "SELECT outcome, actor, signature_valid, payload FROM payments.payment_events "
            "WHERE tenant_id = %s AND order_id = %s ORDER BY id", (tenant.id, order_id)).fetchall()


async def test_sign_in_gives_a_short_lived_token_for_that_tenant(stack: Stack) -> None:
    tenant = _login(stack, stack.add_tenant())
    status, body = await _sign_in(stack, tenant)
    assert status == 200 and body["success"] is True and body["tokenType"] == "Bearer"
    assert body["expiresIn"] == 900 and body["user"] == {"username": "admin"}
    header, claims, _ = body["token"].split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}
    assert json.loads(base64.urlsafe_b64decode(claims + "=="))["tenant"] == str(tenant.id)
    status, listing = await stack.request("GET", "/admin/orders", tenant, headers=_bearer(body["token"]))
    assert status == 200 and listing["orders"] == []


async def test_wrong_password_or_user_is_refused_and_counted(stack: Stack) -> None:
    tenant = _login(stack, stack.add_tenant())
    for user, password in (("admin", "wrong password!"), ("root", PASSWORD), ("admin", "")):
        status, body = await _sign_in(stack, tenant, user, password)
        assert status in (400, 401) and body["success"] is False and "token" not in body
    assert stack.sample("dualstack_v2_admin_login_refused_total", tenant=tenant.slug, outcome="failed") == 2
    no_login = stack.add_tenant()  # a tenant without an admin sign-in: nobody gets in
    assert (await _sign_in(stack, no_login))[0] == 401


async def test_failed_sign_ins_are_throttled_per_tenant_and_client(stack: Stack) -> None:
    tenant, other = _login(stack, stack.add_tenant()), _login(stack, stack.add_tenant())
    for _ in range(5):
        assert (await _sign_in(stack, tenant, password="guess guess guess"))[0] == 401
    status, body = await _sign_in(stack, tenant)  # even the right password waits now
    assert (status, body["error"]) == (429, "too_many_attempts")
    assert stack.sample("dualstack_v2_admin_login_refused_total", tenant=tenant.slug, outcome="throttled") == 1
    assert (await _sign_in(stack, other))[0] == 200  # another tenant's admin is not locked out


async def test_a_token_expires_after_fifteen_minutes(stack: Stack) -> None:
    tenant = _login(stack, stack.add_tenant())
    token = await _token(stack, tenant)
    stack.admin_clock.advance(14 * 60)
    assert (await stack.request("GET", "/admin/orders", tenant, headers=_bearer(token)))[0] == 200
    stack.admin_clock.advance(61)
    status, body = await stack.request("GET", "/admin/orders", tenant, headers=_bearer(token))
    assert (status, body["error"]) == (401, "unauthorized") and "expired" in body["message"]
    assert stack.sample("dualstack_v2_admin_session_refused_total", tenant=tenant.slug, reason="expired") == 1


async def test_a_token_of_one_tenant_never_works_for_another(stack: Stack) -> None:
    a, b = _login(stack, stack.add_tenant()), _login(stack, stack.add_tenant())  # same user name on both
    token = await _token(stack, a)
    status, _ = await stack.request("GET", "/admin/orders", b, headers=_bearer(token))
    assert status == 401
    # Even with b's id written into the claims, a's key did not sign them for b.
    header, claims, signature = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(claims + "=="))
    forged["tenant"] = str(b.id)
    status, _ = await stack.request("GET", "/admin/orders", b,
                                    headers=_bearer(f"{header}.{_segment(forged)}.{signature}"))
    assert status == 401
    assert stack.sample("dualstack_v2_admin_session_refused_total", tenant=b.slug, reason="signature") == 2


async def test_alg_none_and_other_algorithms_are_refused(stack: Stack) -> None:
    tenant = _login(stack, stack.add_tenant())
    token = await _token(stack, tenant)
    _, claims, signature = token.split(".")
    for header, sig in (({"alg": "none", "typ": "JWT"}, ""), ({"alg": "HS512", "typ": "JWT"}, signature),
                        ({"alg": "none"}, signature)):
        status, body = await stack.request("GET", "/admin/orders", tenant,
                                           headers=_bearer(f"{_segment(header)}.{claims}.{sig}"))
        assert (status, body["message"]) == (401, "only HS256 tokens are accepted")
    for bad in ("", "Bearer", "Bearer a.b", f"Basic {token}"):
        assert (await stack.request("GET", "/admin/orders", tenant, headers={"Authorization": bad}))[0] == 401


async def test_the_order_list_has_v1s_rows_a_bounded_page_at_a_time(stack: Stack) -> None:
    tenant, other = _login(stack, stack.add_tenant()), stack.add_tenant()
    for n in range(3):
        await stack.create(tenant, f"L-{n}", amount=1000 + n)
    await stack.create(other, "L-OTHER")
    token = await _token(stack, tenant)
    status, body = await stack.request("GET", "/admin/orders?page=1&limit=2", tenant, headers=_bearer(token))
    assert status == 200 and body["pagination"] == {"page": 1, "limit": 2, "total": 3, "pages": 2}
    first = body["orders"][0]
    assert set(first) == {"id", "customer_name", "email", "phone", "amount", "payment_method", "status",
                          "created_at", "updated_at"}
    assert (first["id"], first["amount"], first["status"], first["customer_name"]) == ("L-2", 1002, "pending", "Budi")
    status, body = await stack.request("GET", "/admin/orders?page=2&limit=2", tenant, headers=_bearer(token))
    assert [o["id"] for o in body["orders"]] == ["L-0"]  # newest first; another tenant's never
    status, body = await stack.request("GET", "/admin/orders?status=PAID", tenant, headers=_bearer(token))
    assert (status, body["orders"]) == (200, [])
    for query in ("limit=101", "limit=0", "page=1001", "page=-1", "status=shipped"):
        assert (await stack.request("GET", f"/admin/orders?{query}", tenant, headers=_bearer(token)))[0] == 400


async def test_a_status_change_is_checked_made_and_recorded_with_the_admin(stack: Stack) -> None:
    tenant = _login(stack, stack.add_tenant(), user="siti")
    await stack.create(tenant, "U-1", amount=50000)
    token = await _token(stack, tenant, "siti")

    async def put(order_id: str, body: Any) -> tuple[int, Any]:
        return await stack.request("PUT", f"/admin/orders/{order_id}", tenant, headers=_bearer(token), json=body)

    status, body = await put("U-1", {"status": "shipped"})  # v1 stored any string
    assert (status, body["error"]) == (400, "invalid_status")
    status, body = await put("U-1", {"status": "PAID"})  # v1's spelling, paid by bank transfer
    assert status == 200 and body["changed"] is True and body["from"] == "pending"
    assert (body["order"]["id"], body["order"]["status"]) == ("U-1", "paid")
    status, body = await put("U-1", {"status": "pending"})
    assert (status, body["error"], body["allowed"]) == (409, "transition_not_allowed", ["refunded"])
    assert "an order that is paid cannot be set to pending" in body["message"]
    status, body = await put("U-1", {"status": "paid"})  # the same status again changes nothing
    assert (status, body["changed"]) == (200, False)
    assert (await put("U-1", {"status": "refunded"}))[0] == 200
    assert (await put("NOPE", {"status": "paid"}))[0] == 404
    events = _events(stack, tenant, "U-1")
    assert [(e[0], e[1], e[2], e[3]) for e in events] == [
        ("manual", "siti", False, {"from": "pending", "to": "paid"}),
        ("manual", "siti", False, {"from": "paid", "to": "refunded"})]
    assert ("U-1", "payment_confirmation") in [(r[0], r[1]) for r in stack.outbox_rows(tenant)]
    status, listed = await stack.request("GET", "/admin/orders", tenant, headers=_bearer(token))
    assert listed["orders"][0]["status"] == "refunded"


async def test_another_tenants_order_cannot_be_changed(stack: Stack) -> None:
    a, b = _login(stack, stack.add_tenant()), stack.add_tenant()
    await stack.create(b, "B-1")
    status, _ = await stack.request("PUT", "/admin/orders/B-1", a, headers=_bearer(await _token(stack, a)),
                                    json={"status": "paid"})
    assert status == 404
    assert _events(stack, b, "B-1") == []


async def test_bodies_are_bounded(stack: Stack) -> None:
    tenant = _login(stack, stack.add_tenant())
    await stack.create(tenant, "BIG-1")
    token = await _token(stack, tenant)
    status, body = await stack.request("POST", "/admin/login", tenant, data=b"{" + b" " * 5000 + b"}",
                                       headers={"Content-Type": "application/json"})
    assert (status, body["error"]) == (413, "body_too_large")
    deep = b"[" * 900 + b"]" * 900
    status, body = await stack.request("PUT", "/admin/orders/BIG-1", tenant, data=deep,
                                       headers={**_bearer(token), "Content-Type": "application/json"})
    assert (status, body["error"]) == (413, "body_too_large")
    status, body = await stack.request("PUT", "/admin/orders/BIG-1", tenant, data=b"[" * 500 + b"]" * 500,
                                       headers=_bearer(token))
    assert (status, body["error"]) == (400, "invalid_body")
    deeper = b"[" * 2000 + b"]" * 2000  # within the sign-in's 4 KiB, past the parser's recursion limit
    status, body = await stack.request("POST", "/admin/login", tenant, data=deeper)
    assert (status, body["error"]) == (400, "invalid_body")
    status, body = await stack.request("POST", "/admin/login", tenant, json={"username": "admin", "password": 7})
    assert (status, body["error"]) == (400, "invalid_body")


def test_the_app_role_cannot_read_another_tenants_admin_credential(stack: Stack) -> None:
    a, b = _login(stack, stack.add_tenant()), _login(stack, stack.add_tenant())
    with psycopg.connect(stack.database.app_url, autocommit=True) as conn:
        query = "SELECT admin_user, admin_password_scrypt, admin_session_key FROM payments.tenant_secrets"
        assert conn.execute(query).fetchall() == []  # bound to no tenant: nothing
        with conn.transaction():
            conn.execute("SELECT set_config('app.tenant_id', %s, true)", (str(a.id),))
            assert conn.execute(f"{query} WHERE tenant_id = %s", (b.id,)).fetchall() == []
            rows = conn.execute(query).fetchall()
    assert len(rows) == 1 and rows[0][0] == "admin"
    stored = rows[0][1]
    assert stored.startswith("scrypt$") and PASSWORD not in stored and verify_password(PASSWORD, stored)

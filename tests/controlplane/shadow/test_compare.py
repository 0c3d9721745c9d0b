from __future__ import annotations

import json

import pytest

from controlplane.shadow.compare import Difference, Normalisation, compare, endpoint_template

V1_STATUS = {"success": True, "order": {"id": "A1", "status": "PAID", "totalAmount": 150000,
                                        "customerName": "Budi", "email": "b@x.co"}}


def run(primary: object, shadow: object, rules: Normalisation | None = None):
    return compare(200, json.dumps(primary).encode(), 200, json.dumps(shadow).encode(), rules or Normalisation())


def test_identical_answers_match() -> None:
    assert run(V1_STATUS, V1_STATUS).matches


def test_differences_by_json_path_and_kind() -> None:
    shadow = {"success": True, "order": {"id": "A1", "status": 1, "totalAmount": 150001, "email": "b@x.co",
                                         "currency": "IDR"}}
    result = run(V1_STATUS, shadow, Normalisation(ignore_extra_fields=False))
    assert result.differences == (
        Difference("$.order.currency", "extra", None, "IDR"),
        Difference("$.order.customerName", "missing", "Budi", None),
        Difference("$.order.status", "type_changed", "PAID", 1),
        Difference("$.order.totalAmount", "value_changed", 150000, 150001),
    )


def test_normalisation_ignores_declared_noise() -> None:
    primary = {"success": True, "token": "t1", "paymentUrl": "u1", "order": {"status": "PAID", "total": 100.0,
                                                                              "items": [{"at": 1}, {"at": 2}]}}
    shadow = {"success": True, "token": "t2", "paymentUrl": "u2", "redirectUrl": "u2",
              "order": {"status": "paid", "total": 100.004, "items": [{"at": 9}, {"at": 8}]}}
    rules = Normalisation(ignore=frozenset({"$.token", "$.paymentUrl", "$.order.items[*].at"}),
                          case_insensitive=frozenset({"$.order.status"}), numeric_tolerance=0.01)
    assert run(primary, shadow, rules).matches  # redirectUrl is an extra field: compatible by default


def test_status_and_non_json_bodies() -> None:
    result = compare(200, b"OK", 403, b"Invalid signature", Normalisation())
    assert [d.kind for d in result.differences] == ["status", "body"]
    assert compare(200, b"OK", 200, b"OK", Normalisation()).matches


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [("GET", "/orders/261225AB12CD/status", "GET /orders/{id}/status"),
     ("GET", "/orders/a%2Fb1/status", "GET /orders/{id}/status"),  # as sent: an escaped / stays in its segment
     ("POST", "/payment/create", "POST /payment/create"),
     ("GET", "/admin/orders/12345", "GET /admin/orders/{id}"),
     ("GET", "/admin/orders", "GET /admin/orders"),
     ("GET", "/x/3f2b8c1e-1111-2222-3333-444455556666", "GET other"),
     ("GET", "/orders/../../etc/status", "GET other"),
     ("GET", "/orders/12/status/extra", "GET other"),
     ("BREW", "/health", "OTHER /health"),
     ("GET", "/health", "GET /health"),
     ("GET", "/health/ready", "GET /health/ready"),
     ("GET", "/health/other", "GET other")],
)
def test_endpoint_templates_are_the_apis_routes_never_a_raw_path(method: str, path: str, template: str) -> None:
    assert endpoint_template(method, path) == template


def test_a_path_is_a_route_as_a_whole() -> None:
    """`$` matches before a final newline; fullmatch does not: `/health\n` is no route."""
    assert endpoint_template("GET", "/health\n") == "GET other"
    assert endpoint_template("GET", "/admin/orders/12345\n") == "GET other"


def test_an_ignored_field_is_still_compared_for_presence() -> None:
    # v1's create without a payment link (Midtrans hung) against v2's with one: not a match.
    rules = Normalisation(ignore=frozenset({"$.paymentUrl", "$.token"}))
    v2 = {"success": True, "paymentUrl": "https://v2/pay", "token": "t2"}
    assert run({"success": True}, v2, rules).differences == (
        Difference("$.paymentUrl", "extra", None, "https://v2/pay"), Difference("$.token", "extra", None, "t2"))
    assert run(v2, {"success": True}, rules).differences == (
        Difference("$.paymentUrl", "missing", "https://v2/pay", None), Difference("$.token", "missing", "t2", None))
    assert run({"success": True, "paymentUrl": "https://v1/pay", "token": "t1"}, v2, rules).matches
    # ignore_entirely: neither value nor presence.
    assert run({"success": True}, v2, Normalisation(ignore_entirely=frozenset({"$.paymentUrl", "$.token"}))).matches


def test_a_string_amount_against_a_number_is_a_type_difference() -> None:
    primary = {"order": {"status": "pending", "totalAmount": "149000.00"}}
    shadow = {"order": {"status": "PENDING_PAYMENT", "totalAmount": 149000}}
    assert run(primary, shadow, Normalisation(numeric_tolerance=1.0)).differences == (
        Difference("$.order.status", "value_changed", "pending", "PENDING_PAYMENT"),
        Difference("$.order.totalAmount", "type_changed", "149000.00", 149000),
    )

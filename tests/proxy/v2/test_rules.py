"""The pure rules of v2: signatures, status mapping and precedence, validation."""

from __future__ import annotations

import pytest

from proxy.v2.gateway import SnapRequest
from proxy.v2.signature import notification_signature, signature_is_valid
from proxy.v2.status import decide_transition, order_status_for
from proxy.v2.validation import validate_create

VECTOR = ("9b162d8c2cf742e86aa619397ca943f2ff7fd1ec715e680f6fe1d613551c4b07"
          "d9de71ee8f24e75c29a71dc43ce6864d161e93087ccbbaf1c7c75e94b1895412")


def test_the_reference_signature_vector() -> None:
    assert notification_signature("ORDER-101", "200", "10000.00", "SB-Mid-server-TEST") == VECTOR
    payload = {"order_id": "ORDER-101", "status_code": "200", "gross_amount": "10000.00", "signature_key": VECTOR}
    assert signature_is_valid(payload, "SB-Mid-server-TEST")
    assert signature_is_valid({**payload, "signature_key": VECTOR.upper()}, "SB-Mid-server-TEST")
    assert not signature_is_valid({**payload, "gross_amount": "10000"}, "SB-Mid-server-TEST")
    assert not signature_is_valid(payload, "SB-Mid-server-OTHER")
    assert not signature_is_valid({**payload, "order_id": 101}, "SB-Mid-server-TEST")


@pytest.mark.parametrize(
    ("transaction", "fraud", "expected"),
    [("settlement", None, "paid"), ("capture", None, "paid"), ("capture", "accept", "paid"),
     ("capture", "challenge", "pending"), ("capture", "deny", "failed"), ("pending", None, "pending"),
     ("authorize", None, "pending"), ("deny", None, "failed"), ("cancel", None, "failed"),
     ("failure", None, "failed"), ("expire", None, "expired"), ("refund", None, "refunded"),
     ("partial_refund", None, "refunded"), ("chargeback", None, "refunded"), ("mystery", None, None)],
)
def test_status_mapping(transaction: str, fraud: str | None, expected: str | None) -> None:
    assert order_status_for(transaction, fraud) == expected


@pytest.mark.parametrize(
    ("current", "transaction", "outcome", "new"),
    [("pending", "settlement", "applied", "paid"), ("pending", "expire", "applied", "expired"),
     ("failed", "settlement", "applied", "paid"), ("expired", "settlement", "applied", "paid"),
     ("paid", "refund", "applied", "refunded"), ("paid", "pending", "ignored_precedence", None),
     ("paid", "expire", "ignored_precedence", None), ("paid", "cancel", "ignored_precedence", None),
     ("paid", "deny", "flagged_reversal", "failed"), ("paid", "settlement", "no_change", None),
     ("refunded", "settlement", "ignored_precedence", None), ("pending", "mystery", "unknown_status", None)],
)
def test_precedence(current: str, transaction: str, outcome: str, new: str | None) -> None:
    transition = decide_transition(current, transaction, None)  # type: ignore[arg-type]
    assert (transition.outcome, transition.new_status) == (outcome, new)


def test_validation_accepts_what_the_funnel_sends() -> None:
    create, details = validate_create({"orderId": "261225AB12CD", "amount": "150000", "email": "a@b.co",
                                       "phone": "0812", "name": " Budi ", "paymentMethod": "BCA"})
    assert details == [] and create is not None
    assert (create.amount, create.name, create.payment_method) == (150000, "Budi", "bca")
    for bad_amount in (0, -1, 1.5, "12a", True, None, 10**13):
        assert "Valid amount is required" in validate_create({"amount": bad_amount})[1]
    assert validate_create({"orderId": "x" * 51})[1][0].startswith("Order ID must be at most 50")
    assert validate_create([1, 2])[1] == ["Request body must be a JSON object"]


def test_snap_body_maps_payment_methods() -> None:
    base = dict(order_id="O", amount=1, customer_name="B", email="e@x.y", phone="1", notification_url="u")
    assert SnapRequest(**base, payment_method="mandiri").body()["enabled_payments"] == ["echannel"]
    assert SnapRequest(**base, payment_method="qris").body()["enabled_payments"] == ["other_qris"]
    assert "enabled_payments" not in SnapRequest(**base, payment_method="jago").body()
    body = SnapRequest(**base, payment_method=None, finish_url="https://f").body()
    assert body["callbacks"] == {"finish": "https://f", "error": "https://f"}
    assert "finish_redirect_url" not in str(body)

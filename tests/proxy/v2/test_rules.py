"""The pure rules of v2: status mapping and precedence, validation (signatures and status codes: tests/proxy/serving)."""

from __future__ import annotations

import pytest

from controlplane.order_status import order_status_for
from proxy.v2.gateway import SnapRequest
from proxy.v2.status import decide_transition, needs_confirmation
from proxy.v2.validation import validate_create


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


def test_only_money_moving_changes_need_midtrans_confirmation() -> None:
    confirm = {(current, transaction): needs_confirmation(decide_transition(current, transaction, None))
               for current, transaction in (("pending", "settlement"), ("pending", "deny"), ("paid", "refund"),
                                            ("paid", "deny"), ("pending", "expire"), ("paid", "settlement"),
                                            ("paid", "pending"))}
    assert [pair for pair, needed in confirm.items() if needed] == [
        ("pending", "settlement"), ("pending", "deny"), ("paid", "refund"), ("paid", "deny")]


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


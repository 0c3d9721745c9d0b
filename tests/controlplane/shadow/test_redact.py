from __future__ import annotations

import json

from controlplane.shadow.redact import redact_at, redact_value

PII = {"success": True, "order": {"id": "A1", "status": "PAID", "customerName": "Budi Santoso",
                                  "email": "budi@example.com", "totalAmount": 150000,
                                  "contact": {"phone_number": "+62 812-3456-7890", "note": "call budi@example.com"}},
       "token": "4ee433e1-0d9b-4486-bec6-43738eda56ce", "paymentUrl": "https://x/snap/v4/redirection/abc",
       "items": [{"snap_token": "x", "sku": "FILM-1"}], "signature_key": "9b162d8c2cf742e86aa619397ca943f2"}


def test_nothing_personal_or_secret_survives() -> None:
    text = json.dumps(redact_value(PII))
    for secret in ("Budi", "budi@example.com", "812", "4ee433e1", "redirection", "9b162d8c"):
        assert secret not in text
    redacted = redact_value(PII)
    # What is needed to understand a difference stays.
    assert redacted["order"]["status"] == "PAID" and redacted["order"]["totalAmount"] == 150000
    assert redacted["order"]["id"] == "A1" and redacted["items"][0]["sku"] == "FILM-1"


def test_redaction_by_path() -> None:
    assert redact_at("$.order.email", "a@b.co") == "[redacted]"
    assert redact_at("$.order.customerName", "Budi") == "[redacted]"
    assert redact_at("$.items[0].note", "mail me at a@b.co") == "[email]"
    assert redact_at("$.order.totalAmount", 150000) == 150000
    assert redact_at("$.order.status", "PAID") == "PAID"
    assert redact_at("$.phone", "081234567890") == "[redacted]"
    assert redact_at("$.misc", "081234567890") == "[phone]"
    assert redact_at("$.ref", "ORDER-1") == "ORDER-1"


def test_amounts_written_as_strings_are_never_redacted_by_shape() -> None:
    # v1 sends amounts as strings: redacting "149000.00" as a phone hid a type difference.
    for amount in ("149000.00", "99000.00", "150000", "1234567890.50", "0.50"):
        assert redact_at("$.order.totalAmount", amount) == amount
        assert redact_value({"gross": amount}) == {"gross": amount}
    # Phone numbers still go: by key whatever the shape, by value where the shape cannot be an amount.
    assert redact_value({"note": "081234567890", "other": "+62 812 3456 7890"}) == {
        "note": "[phone]", "other": "[phone]"}
    assert redact_value({"mobile": "6281234567890", "customer_phone": "6281234567890"}) == {
        "mobile": "[redacted]", "customer_phone": "[redacted]"}


def test_an_absent_sensitive_field_stays_visibly_absent() -> None:
    assert redact_at("$.paymentUrl", None) is None
    assert redact_at("$.paymentUrl", "https://app.midtrans.com/snap/v4/x") == "[redacted]"

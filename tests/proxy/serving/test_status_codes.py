"""The status code each Midtrans transaction status carries: the rule the router and v2 both apply."""

from __future__ import annotations

import pytest

from proxy.serving.status_codes import expected_status_code, status_code_disagrees, v1_would_misapply


@pytest.mark.parametrize(
    ("transaction", "fraud", "code"),
    [("settlement", None, "200"), ("capture", None, "200"), ("capture", "accept", "200"), ("refund", None, "200"),
     ("partial_refund", None, "200"), ("chargeback", None, "200"), ("pending", None, "201"),
     ("authorize", None, "201"), ("capture", "challenge", "201"), ("deny", None, "202"), ("cancel", None, "202"),
     ("expire", None, "202"), ("failure", None, "202"), ("capture", "deny", None), ("mystery", None, None)],
)
def test_the_status_code_each_status_carries(transaction: str, fraud: str | None, code: str | None) -> None:
    assert expected_status_code(transaction, fraud) == code


@pytest.mark.parametrize(
    ("payload", "disagrees"),
    [({"transaction_status": "settlement", "status_code": "200"}, False),
     ({"transaction_status": "settlement", "status_code": "201"}, True),  # a stolen pending, re-sent as paid
     ({"transaction_status": "deny", "status_code": "200"}, True),  # a settlement re-sent as deny
     ({"transaction_status": "capture", "fraud_status": "challenge", "status_code": "200"}, True),
     ({"transaction_status": "capture", "fraud_status": "", "status_code": "200"}, False),
     ({"transaction_status": "settlement"}, True),  # no code at all
     ({"transaction_status": "settlement", "status_code": 200}, True),  # not the string Midtrans signs
     ({"transaction_status": "mystery", "status_code": "299"}, False),  # not judged here
     ({"transaction_status": ["settlement"], "status_code": "201"}, False)],  # no status: not judged
)
def test_a_status_that_disagrees_with_its_code_is_told(payload: dict[str, object], disagrees: bool) -> None:
    assert status_code_disagrees(payload) is disagrees


@pytest.mark.parametrize(
    ("payload", "misapplied"),
    [({"transaction_status": "capture"}, False),  # paid, as v1 applies it
     ({"transaction_status": "capture", "fraud_status": None}, False),
     ({"transaction_status": "capture", "fraud_status": ""}, False),
     ({"transaction_status": "capture", "fraud_status": "accept"}, False),
     ({"transaction_status": "capture", "fraud_status": "challenge"}, True),  # pending: v1 would mark it paid
     ({"transaction_status": "capture", "fraud_status": "deny"}, True),  # failed: v1 would mark it paid
     ({"transaction_status": "capture", "fraud_status": "ACCEPT"}, True),  # not Midtrans' spelling: in doubt
     ({"transaction_status": "capture", "fraud_status": ["accept"]}, True),
     ({"transaction_status": "capture", "fraud_status": 0}, True),
     ({"transaction_status": "settlement", "fraud_status": "deny"}, False),  # v1 marks settlement paid: right
     ({"transaction_status": "deny", "fraud_status": "deny"}, False),
     ({"transaction_status": ["capture"], "fraud_status": "deny"}, False),  # no status v1 acts on
     ({}, False)],
)
def test_v1_would_misapply_a_capture_not_accepted(payload: dict[str, object], misapplied: bool) -> None:
    assert v1_would_misapply(payload) is misapplied

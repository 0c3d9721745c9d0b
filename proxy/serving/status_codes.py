"""Which status code a genuine Midtrans notification carries for its transaction status: the rule both
servers apply, the router before it delivers a notification to any backend (v1 believes any status it
is sent), v2 before it believes one.

The signature covers `status_code` but not `transaction_status` or `fraud_status`, so a status that
disagrees with its code was changed after Midtrans signed it: a stolen pending notification (201)
re-sent as settlement, a settlement (200) re-sent as deny. Pure: no I/O, no state.

`v1_would_misapply` is the other half of what the router must know before v1 sees a notification:
v1 marks any `capture` paid, whatever its fraud status, so a genuine `capture` that is challenged
(pending) or denied (failed), or a stolen 202 re-sent as capture + deny (which the table above does
not judge), would make v1 invent a payment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# The status code Midtrans sends with each transaction status (midtrans.md).
_STATUS_CODES: Final[dict[str, str]] = {
    "settlement": "200", "refund": "200", "partial_refund": "200", "chargeback": "200",
    "pending": "201", "authorize": "201",
    "deny": "202", "cancel": "202", "expire": "202", "failure": "202",
}
_CAPTURE_CODES: Final[dict[str | None, str]] = {None: "200", "": "200", "accept": "200", "challenge": "201"}


def expected_status_code(transaction_status: str, fraud_status: str | None) -> str | None:
    """The status code a genuine notification carries, or None for a combination the table does not
    name (capture + deny, partial_chargeback, unknown values): those are not judged here, and v2's
    Get Status still confirms any money-moving change they would make."""
    if transaction_status == "capture":
        return _CAPTURE_CODES.get(fraud_status)
    return _STATUS_CODES.get(transaction_status)


def status_code_disagrees(payload: Mapping[str, object]) -> bool:
    """Whether a notification's status code is not the one its transaction status carries (a field
    that is not a string counts as absent)."""
    def text(key: str) -> str | None:
        value = payload.get(key)
        return value if isinstance(value, str) else None

    expected = expected_status_code(text("transaction_status") or "", text("fraud_status") or None)
    return expected is not None and expected != text("status_code")


# The fraud statuses with which a `capture` means paid (midtrans.md): the only ones v1 applies right.
_PAID_CAPTURE_FRAUD: Final = frozenset({None, "", "accept"})


def v1_would_misapply(payload: Mapping[str, object]) -> bool:
    """Whether v1 would apply this notification wrongly: a `capture` whose fraud status is anything but
    absent, empty or `accept` (v1 marks every capture paid). A fraud status that is not a string
    (other than null) is not one that means paid: in doubt, v1 does not see it."""
    if payload.get("transaction_status") != "capture":
        return False
    fraud = payload.get("fraud_status")
    return not (fraud is None or (isinstance(fraud, str) and fraud in _PAID_CAPTURE_FRAUD))

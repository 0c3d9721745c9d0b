"""The one status-precedence rule: v2 applies it (no copy of its own), its transitions agree with the
allowed moves, and its SQL form is the same rule."""

from __future__ import annotations

import itertools

import psycopg

from controlplane.order_status import (
    MONEY_MOVING,
    ORDER_STATUSES,
    may_move,
    order_status_for,
    reachable,
    sql_may_move,
)
from proxy.v2 import status as v2
from tests.conftest import Database

MIDTRANS = ("settlement", "capture", "pending", "authorize", "deny", "cancel", "failure", "expire", "refund",
            "partial_refund", "chargeback", "partial_chargeback", "mystery", "")
FRAUD = (None, "", "accept", "challenge", "deny", "odd")


def test_v2_applies_the_one_rule() -> None:
    assert v2.order_status_for is order_status_for and v2.MONEY_MOVING is MONEY_MOVING
    assert set(ORDER_STATUSES) == set(v2.V1_SPELLING)  # every status has v1's spelling for the funnel
    for transaction_status, fraud in itertools.product(MIDTRANS, FRAUD):
        target = order_status_for(transaction_status, fraud)
        assert target is None or target in ORDER_STATUSES, (transaction_status, fraud)


def test_the_allowed_moves_are_v2s() -> None:
    for current, transaction_status, fraud in itertools.product(ORDER_STATUSES, MIDTRANS, FRAUD):
        target = order_status_for(transaction_status, fraud)
        if target is None or target == current:
            continue
        outcome = v2.decide_transition(current, transaction_status, fraud).outcome  # type: ignore[arg-type]
        if outcome == "flagged_reversal":
            continue  # a bank's reversal of a paid order, made by v2 on Midtrans' word only; never by a sync
        assert (outcome == "applied") == may_move(current, target), (current, transaction_status, fraud)


def test_reachable_is_the_moves_one_or_more() -> None:
    assert reachable("pending", "refunded") and reachable("failed", "refunded") and reachable("expired", "refunded")
    assert not reachable("paid", "pending") and not reachable("refunded", "paid") and not reachable("paid", "paid")
    for current, target in itertools.product(ORDER_STATUSES, ORDER_STATUSES):
        one_or_two = may_move(current, target) or any(may_move(current, s) and may_move(s, target)
                                                       for s in ORDER_STATUSES)
        assert reachable(current, target) == one_or_two, (current, target)  # no path here is longer than two


def test_the_sql_condition_is_the_same_rule(database: Database) -> None:
    with psycopg.connect(database.admin_url) as conn:
        for current, target in itertools.product(ORDER_STATUSES, ORDER_STATUSES):
            row = conn.execute(f"SELECT {sql_may_move('%(c)s::text', '%(t)s::text')}",
                               {"c": current, "t": target}).fetchone()
            assert row == (may_move(current, target),), (current, target)

"""How v1's row stands against v2's order: behind (the way back would lose it), or ahead on money
v2 never saw move (v1's word alone, said on the way back)."""

from __future__ import annotations

import pytest

from controlplane.reverse.rows import ahead, behind


@pytest.mark.parametrize(("v1", "v2", "why"), [
    ("paid", "pending", "v1 says paid, v2 says pending"),
    ("PAID", "pending", "v1 says paid, v2 says pending"),  # the later SQLite variant's spelling
    ("refunded", "paid", "v1 says refunded, v2 says paid"),  # a refund on v1's admin page: worth a look too
    ("refunded", "pending", "v1 says refunded, v2 says pending"),
    ("refunded", "expired", "v1 says refunded, v2 says expired"),
    ("failed", "expired", "v1 says failed, v2 says expired"),
    ("paid", "paid", None),
    ("expired", "pending", None),  # no money moved
    ("pending", "paid", None),  # behind, not ahead
    ("shipped", "pending", None),  # not a status v1 spells: `behind` reports it
    (None, "pending", None),
])
def test_ahead(v1: str | None, v2: str, why: str | None) -> None:
    assert ahead(v1, v2) == why


def test_v1_pending_is_behind_v2_refunded() -> None:
    assert behind("pending", "refunded") == "v1 says pending, v2 says refunded"  # through paid, missed by v1


def test_behind_and_ahead_never_both() -> None:
    statuses = ("pending", "paid", "failed", "expired", "refunded")
    for v1 in statuses:
        for v2 in statuses:
            assert not (ahead(v1, v2) and behind(v1, v2)), (v1, v2)

"""The one order id pattern is the payments orders table's own CHECK: v2 answers an id outside it 404
without asking, which is right only while no stored order can have one."""

from __future__ import annotations

import re
from pathlib import Path

from controlplane.order_id import ORDER_ID_RE

SCHEMA = Path(__file__).resolve().parents[2] / "controlplane" / "db" / "migrations" / "0001_schema.sql"


def test_the_pattern_is_the_orders_tables_check() -> None:
    checks = re.findall(r"order_id\s+text NOT NULL CHECK \(order_id ~ '\^(.*?)\$'\)", SCHEMA.read_text())
    assert checks == [ORDER_ID_RE.pattern]


def test_ids_in_and_out() -> None:
    assert all(ORDER_ID_RE.fullmatch(i) for i in ("A", "ORD-2026.01_x~1", "9" * 50))
    assert not any(ORDER_ID_RE.fullmatch(i) for i in ("", "9" * 51, "A B", "A\x00", "é", "A/..", "A\n"))

"""0003: rejected notifications give back the deduplication keys they took; the schema keeps the rule."""

from __future__ import annotations

import dataclasses
import secrets

import psycopg
import pytest

from controlplane.db.migrate import bundled_migrations, migrate
from tests.conftest import Database

INSERT_EVENT = ("INSERT INTO {schema}.payment_events (tenant_id, order_id, signature_valid, outcome, dedupe_key) "
                "VALUES (%s, %s, true, %s, %s)")


def test_rejected_events_release_their_keys_and_may_not_take_one_again(database: Database) -> None:
    layout = dataclasses.replace(database.layout, schema="m0003_" + secrets.token_hex(3))
    before = [m for m in bundled_migrations() if m.version < "0003"]
    migrate(database.admin_url, layout, migrations=before)
    try:
        with psycopg.connect(database.admin_url) as conn:  # as the old handler left them
            tenant = conn.execute(layout.render(
                "INSERT INTO {schema}.tenants (slug, name, plan, midtrans_server_key, midtrans_environment) "
                "VALUES ('m3', 'M3', 'pro', 'SB-Mid-server-M3', 'sandbox') RETURNING id")).fetchone()
            assert tenant is not None
            for order_id, outcome in (("A", "amount_mismatch"), ("B", "applied"), ("C", "no_change")):
                conn.execute(layout.render(INSERT_EVENT), (tenant[0], order_id, outcome, f"{order_id}|key"))
        through = [m for m in bundled_migrations() if m.version <= "0003"]
        assert migrate(database.admin_url, layout, migrations=through).applied == ["0003"]
        with psycopg.connect(database.admin_url) as conn:
            held = conn.execute(layout.render("SELECT order_id, dedupe_key FROM {schema}.payment_events "
                                              "ORDER BY order_id")).fetchall()
            assert held == [("A", None), ("B", "B|key"), ("C", "C|key")]
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(layout.render(INSERT_EVENT), (tenant[0], "A", "amount_mismatch", "A|key"))
    finally:
        with psycopg.connect(database.admin_url, autocommit=True) as conn:
            conn.execute(layout.render("DROP SCHEMA {schema} CASCADE"))

"""The router's sightings of v1 orders are pruned by the decider once older than the preflight's
window: the table holds about a day of each tenant's sample, not v1's whole history."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import psycopg

from controlplane.config import load_config_text
from controlplane.rollout.decide import Policy
from controlplane.rollout.decider import run_once
from controlplane.rollout.sources import PrometheusSource
from controlplane.state import v1_orders_seen
from controlplane.state.rollouts import RolloutStore
from controlplane.state.schema import STATE_SCHEMA
from tests.conftest import Database


def test_a_decider_pass_prunes_sightings_older_than_the_window_as_the_control_role(state: Database) -> None:
    tenant = "p" + secrets.token_hex(3)
    with psycopg.connect(state.admin_url) as conn:
        conn.execute(f"INSERT INTO {STATE_SCHEMA}.v1_orders_seen (tenant, order_id, seen, seen_at) VALUES "
                     "(%s, 'OLD-1', 'created', now() - interval '25 hours'), "
                     "(%s, 'NEW-1', 'answered', now() - interval '23 hours')", (tenant, tenant))
    # No tenant on v2 here: the pass decides nothing, and its source is never asked.
    config = load_config_text(f'upstreams: {{v1: {{url: "http://127.0.0.1:1", tenants: [{tenant}]}}, '
                              'v2: {url: "http://127.0.0.1:2"}}\nbase_domain: agentbar.ai\n'
                              f'tenants:\n  {tenant}: {{backend: v1}}\n')
    store = RolloutStore(state.control_url, STATE_SCHEMA)
    run_once(config, store, PrometheusSource("http://127.0.0.1:1"), Policy(), datetime.now(UTC), dry_run=True)
    with psycopg.connect(state.control_url) as conn:
        assert v1_orders_seen.recent(conn, STATE_SCHEMA, tenant) == {"NEW-1": "answered"}  # dry run: nothing pruned
    with psycopg.connect(state.admin_url) as conn:
        left = conn.execute(f"SELECT count(*) FROM {STATE_SCHEMA}.v1_orders_seen WHERE tenant = %s", (tenant,))
        assert left.fetchone() == (2,)
    run_once(config, store, PrometheusSource("http://127.0.0.1:1"), Policy(), datetime.now(UTC))
    with psycopg.connect(state.admin_url) as conn:
        rows = conn.execute(f"SELECT order_id FROM {STATE_SCHEMA}.v1_orders_seen WHERE tenant = %s", (tenant,))
        assert rows.fetchall() == [("NEW-1",)]

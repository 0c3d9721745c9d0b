"""One role per program in the state database (migration 0008): the router reads locks and writes
shadow results, only the decider and the CLI write locks and events, and v2's role has no access.
Each program's real code runs as its role."""

from __future__ import annotations

import secrets

import psycopg
import pytest
from psycopg import errors
from psycopg.conninfo import make_conninfo

from controlplane.cli import ExitStatus, run
from controlplane.config import load_config_text
from controlplane.shadow.compare import Difference
from controlplane.state.locks import LockStore
from controlplane.state.schema import STATE_SCHEMA
from controlplane.state.shadow_noise import NoiseLearner
from proxy.router.locks import read_state
from proxy.router.shadow_store import ShadowStore
from tests.conftest import SERVER_URL, Database

WRITES_THAT_PIN_A_TENANT = (
    f"INSERT INTO {STATE_SCHEMA}.rollout_locks (tenant, backend, declared_backend, reason, actor) "
    "VALUES (%s, 'v1', 'v2', 'forged', 'router')",
    f"INSERT INTO {STATE_SCHEMA}.rollout_events (tenant, kind, actor) VALUES (%s, 'rollback', 'router')",
)


def tenant_config(tenant: str) -> str:
    return (f'upstreams: {{v1: {{url: "http://127.0.0.1:1", tenants: [{tenant}]}}, v2: {{url: "http://127.0.0.1:2"}}}}\n'
            f"base_domain: agentbar.ai\ntenants:\n  {tenant}: {{backend: v2}}\n")


async def test_the_router_role_reads_locks_and_writes_shadow_results(state: Database) -> None:
    tenant, endpoint = "r" + secrets.token_hex(3), "GET /orders/{id}/status"
    LockStore(state.control_url, STATE_SCHEMA).rollback(load_config_text(tenant_config(tenant)), tenant, "test", "ops")
    locks, _ = await read_state(state.router_url, STATE_SCHEMA, timeout_s=10)  # the router's own lock reader
    assert locks[tenant].backend == "v1"
    store, learner = ShadowStore(state.router_url, STATE_SCHEMA), NoiseLearner()
    store.learner = learner
    await store.open()
    try:
        learner.record(tenant, endpoint, "primary", ["$.generatedAt"])
        store.record(tenant, endpoint, "mismatch", 0.01, 0.02, (Difference("$.order.status", "value_changed",
                                                                           "PAID", "PENDING"),),
                     "req-1", primary_backend="v1")
        await store.flush()  # counts, fields, a sample (and its pruning), noise pairs
        await store.read_noise()  # the noise window (and its pruning)
    finally:
        await store.close()
    with psycopg.connect(state.admin_url) as conn:
        written = [conn.execute(f"SELECT count(*) FROM {STATE_SCHEMA}.{table} WHERE tenant = %s", (tenant,)).fetchone()
                   for table in ("shadow_counts", "shadow_fields", "shadow_samples", "shadow_noise")]
    assert written == [(1,), (1,), (1,), (2,)]


@pytest.mark.parametrize("statement", WRITES_THAT_PIN_A_TENANT, ids=["lock", "event"])
def test_the_router_role_cannot_pin_a_tenant(state: Database, statement: str) -> None:
    with psycopg.connect(state.router_url) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement, ("r" + secrets.token_hex(3),))


@pytest.mark.parametrize("statement", WRITES_THAT_PIN_A_TENANT, ids=["lock", "event"])
def test_the_control_role_takes_locks_and_records_events(state: Database, statement: str) -> None:
    tenant = "c" + secrets.token_hex(3)
    with psycopg.connect(state.control_url) as conn:
        conn.execute(statement, (tenant,))
        conn.execute(f"DELETE FROM {STATE_SCHEMA}.rollout_locks WHERE tenant = %s", (tenant,))


def test_v2s_application_role_has_no_access(state: Database) -> None:
    with psycopg.connect(state.app_url) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(f"SELECT * FROM {STATE_SCHEMA}.rollout_locks")


def test_db_migrate_target_state_creates_the_control_role_with_its_password(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    suffix = secrets.token_hex(3)
    name, roles = f"dualstack_roles_{suffix}", {kind: f"rl_{suffix}_{kind}" for kind in ("owner", "app", "router",
                                                                                        "control")}
    monkeypatch.setenv("DUALSTACK_CONTROL_PASSWORD", "control-secret")
    common = ["--admin-url", make_conninfo(SERVER_URL, dbname=name),
              *(arg for kind, role in roles.items() for arg in (f"--{kind}-role", role))]
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        assert run(["db", "migrate", *common]) == ExitStatus.OK
        assert f"created role {roles['control']}" not in capsys.readouterr().out  # payments has no use for it
        assert run(["db", "migrate", "--target", "state", *common]) == ExitStatus.OK
        assert f"created role {roles['control']}" in capsys.readouterr().out
        with psycopg.connect(SERVER_URL) as conn:
            control = conn.execute("SELECT rolcanlogin, rolbypassrls, rolpassword IS NOT NULL FROM pg_authid "
                                   "WHERE rolname = %s", (roles["control"],)).fetchone()
        assert control == (True, False, True)
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in (roles["app"], roles["router"], roles["control"], roles["owner"]):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')

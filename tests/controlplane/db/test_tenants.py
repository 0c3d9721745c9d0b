from __future__ import annotations

import secrets

import psycopg
import pytest

from controlplane.cli import ExitStatus, run
from controlplane.db.tenants import NewTenant, TenantAdmin, TenantError, hash_token, mask_secret
from tests.conftest import Database


def slug() -> str:
    return "t" + secrets.token_hex(3)


def test_add_list_set_suspend(database: Database) -> None:
    admin = TenantAdmin(database.admin_url, database.layout)
    name = slug()
    token = admin.add(NewTenant(name, "Shop", "starter", "SB-Mid-server-SECRETVALUE1234", "sandbox"))
    with psycopg.connect(database.admin_url) as conn:
        stored = conn.execute("SELECT admin_token_sha256, max_orders_per_month FROM payments.tenants "
                              "WHERE slug = %s", (name,)).fetchone()
    assert stored == (hash_token(token), 100)  # the plan's limit; only the token's hash is stored
    row = next(r for r in admin.list() if r["slug"] == name)
    assert row["midtrans_server_key"] == "SB-Mid-server-…1234"
    admin.set(name, plan="enterprise")
    admin.set(name, status="suspended")
    row = next(r for r in admin.list() if r["slug"] == name)
    assert (row["plan"], row["max_orders_per_month"], row["status"]) == ("enterprise", None, "suspended")


@pytest.mark.parametrize(
    ("key", "environment", "message"),
    [
        ("Mid-server-PRODUCTIONKEY99", "sandbox", "a sandbox tenant needs a sandbox server key"),
        ("SB-Mid-server-SANDBOXKEY99", "production", "a production tenant needs a production server key"),
    ],
)
def test_keys_must_match_the_environment(database: Database, key: str, environment: str, message: str) -> None:
    admin = TenantAdmin(database.admin_url, database.layout)
    with pytest.raises(TenantError, match=message) as info:
        admin.add(NewTenant(slug(), "Shop", "pro", key, environment))
    assert key not in str(info.value)  # the secret is never echoed whole


def test_set_checks_key_and_environment_together(database: Database) -> None:
    admin = TenantAdmin(database.admin_url, database.layout)
    name = slug()
    admin.add(NewTenant(name, "Shop", "pro", "SB-Mid-server-SANDBOXKEY99", "sandbox"))
    with pytest.raises(TenantError, match="production tenant needs a production server key"):
        admin.set(name, midtrans_environment="production")
    with pytest.raises(TenantError, match="no tenant 'nope'"):
        admin.set("nope", name="x")


def test_cli_tenant_commands(database: Database, capsys: pytest.CaptureFixture[str]) -> None:
    name = slug()
    common = ["--admin-url", database.admin_url, "--owner-role", database.layout.owner_role,
              "--app-role", database.layout.app_role]
    assert run(["tenant", "add", name, "--name", "CLI Shop", "--plan", "pro", "--midtrans-environment",
                "sandbox", "--midtrans-server-key", "SB-Mid-server-CLIKEY123456", *common]) == ExitStatus.OK
    out = capsys.readouterr().out
    assert "admin token for GET /admin/stats (shown once, stored hashed)" in out
    assert run(["tenant", "add", name, "--name", "again", "--plan", "pro", "--midtrans-environment",
                "sandbox", "--midtrans-server-key", "SB-Mid-server-CLIKEY123456", *common]) == ExitStatus.INVALID
    assert "already exists" in capsys.readouterr().err
    assert run(["tenant", "list", *common]) == ExitStatus.OK
    listing = capsys.readouterr().out
    assert name in listing and "SB-Mid-server-CLIKEY123456" not in listing
    assert run(["tenant", "suspend", name, *common]) == ExitStatus.OK
    assert run(["tenant", "list", "--admin-url", "postgresql://x@127.0.0.1:1/x"]) == ExitStatus.ENVIRONMENT


def test_mask_secret() -> None:
    assert mask_secret("SB-Mid-server-abcdefghij1234") == "SB-Mid-server-…1234"
    assert mask_secret("Mid-server-abcdefghij9876") == "Mid-server-…9876"
    assert mask_secret("short") == "…"
    assert mask_secret(None) == "-"

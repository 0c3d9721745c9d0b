from __future__ import annotations

import io
import secrets

import psycopg
import pytest

from controlplane.admin_password import verify_password
from controlplane.cli import ExitStatus, run
from controlplane.db.tenants import NewTenant, TenantAdmin, TenantError, check_email_fields, hash_token, mask_secret
from tests.conftest import Database


def slug() -> str:
    return "t" + secrets.token_hex(3)


def test_add_list_set_suspend(database: Database) -> None:
    admin = TenantAdmin(database.admin_url, database.layout)
    name = slug()
    token = admin.add(NewTenant(name, "Shop", "starter", "SB-Mid-server-SECRETVALUE1234", "sandbox"))
    with psycopg.connect(database.admin_url) as conn:
        stored = conn.execute("SELECT s.admin_token_sha256, max_orders_per_month FROM payments.tenants t "
                              "JOIN payments.tenant_secrets s ON s.tenant_id = t.id WHERE slug = %s",
                              (name,)).fetchone()
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


def test_cli_sets_a_tenants_relay_by_name_never_its_password(database: Database,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    name = slug()
    common = ["--admin-url", database.admin_url, "--owner-role", database.layout.owner_role,
              "--app-role", database.layout.app_role]
    assert run(["tenant", "add", name, "--name", "Relay Shop", "--plan", "pro", "--midtrans-environment", "sandbox",
                "--midtrans-server-key", "SB-Mid-server-CLIKEY123456", "--email-from", "halo@shop.example",
                *common]) == ExitStatus.OK
    assert run(["tenant", "set", name, "--smtp-host", "relay.example.net", "--smtp-security", "tls",
                "--smtp-credential", "platform", "--email-language", "en", *common]) == ExitStatus.OK
    capsys.readouterr()
    assert run(["tenant", "list", *common]) == ExitStatus.OK
    out, err = capsys.readouterr()
    assert "relay.example.net:465 tls as platform" in next(line for line in out.splitlines() if line.startswith(name))
    assert f"tenant {name}:" not in err
    assert run(["tenant", "set", name, "--smtp-credential", "Not_A_Name", *common]) == ExitStatus.INVALID
    assert "DUALSTACK_SMTP_USERNAME_<NAME>" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # there is no option that takes a password
        run(["tenant", "set", name, "--smtp-password", "x", *common])


@pytest.mark.parametrize("credential", ["shared_relay!", "platform\n", "platform-"])
def test_a_credential_name_must_be_a_name_as_a_whole(credential: str) -> None:
    """v2 reads DUALSTACK_SMTP_*_<NAME>: a name that is only name-shaped at its start names nothing."""
    with pytest.raises(TenantError, match="not a valid credential name"):
        check_email_fields({"smtp_credential": credential})
    check_email_fields({"smtp_credential": "shared-relay"})


def test_cli_sets_a_finish_url_and_refuses_an_unknown_placeholder(database: Database,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    name = slug()
    common = ["--admin-url", database.admin_url, "--owner-role", database.layout.owner_role,
              "--app-role", database.layout.app_role]
    assert run(["tenant", "add", name, "--name", "Finish Shop", "--plan", "pro", "--midtrans-environment", "sandbox",
                "--midtrans-server-key", "SB-Mid-server-CLIKEY123456",
                "--finish-url", "https://{slug}.example/done?o={orderid}", *common]) == ExitStatus.INVALID
    err = capsys.readouterr().err
    assert "{orderid} is not a placeholder" in err and "{slug}, {base_domain}, {order_id}" in err
    assert run(["tenant", "add", name, "--name", "Finish Shop", "--plan", "pro", "--midtrans-environment", "sandbox",
                "--midtrans-server-key", "SB-Mid-server-CLIKEY123456",
                "--finish-url", "https://shop.example/thanks/{order_id}", *common]) == ExitStatus.OK
    assert run(["tenant", "set", name, "--finish-url", "https://shop.example/{order_id!r}", *common]) == \
        ExitStatus.INVALID
    assert "takes no format spec or conversion" in capsys.readouterr().err
    assert run(["tenant", "set", name, "--finish-url", "https://shop.example/{order_id", *common]) == ExitStatus.INVALID
    assert run(["tenant", "set", name, "--finish-url", "/thank-you", *common]) == ExitStatus.INVALID
    assert "not an absolute http(s) URL" in capsys.readouterr().err
    row = next(r for r in TenantAdmin(database.admin_url, database.layout).list() if r["slug"] == name)
    assert row["finish_url"] == "https://shop.example/thanks/{order_id}"  # the refused ones changed nothing
    assert run(["tenant", "set", name, "--finish-url", "https://{slug}.shop.example/t?o={order_id}", *common]) == \
        ExitStatus.OK
    row = next(r for r in TenantAdmin(database.admin_url, database.layout).list() if r["slug"] == name)
    assert row["finish_url"] == "https://{slug}.shop.example/t?o={order_id}"


def test_cli_sets_cors_origins_normalized_and_refuses_what_is_no_origin(database: Database,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    name = slug()
    common = ["--admin-url", database.admin_url, "--owner-role", database.layout.owner_role,
              "--app-role", database.layout.app_role]
    add = ["tenant", "add", name, "--name", "Cors Shop", "--plan", "pro", "--midtrans-environment", "sandbox",
           "--midtrans-server-key", "SB-Mid-server-CLIKEY123456", *common]

    def stored() -> list[str]:
        return list(next(r for r in TenantAdmin(database.admin_url, database.layout).list()
                         if r["slug"] == name)["cors_origins"])

    assert run([*add, "--cors-origin", "*"]) == ExitStatus.INVALID
    assert "is not an origin such as https://shop.example" in capsys.readouterr().err
    assert run([*add, "--cors-origin", "HTTPS://Shop.Example:443", "--cors-origin", "https://shop.example"]) == \
        ExitStatus.OK
    assert stored() == ["https://shop.example"]  # as a browser sends it, once
    for wrong in ("https://shop.example/", "https://shop.example/path", "ftp://shop.example",
                  "https://shop.example:99999", "https://shop.example\n"):
        assert run(["tenant", "set", name, "--cors-origin", wrong, *common]) == ExitStatus.INVALID, wrong
    too_many = [arg for n in range(21) for arg in ("--cors-origin", f"https://s{n}.example")]
    assert run(["tenant", "set", name, *too_many, *common]) == ExitStatus.INVALID
    assert "at most 20 CORS origins" in capsys.readouterr().err
    assert stored() == ["https://shop.example"]  # the refused ones changed nothing
    assert run(["tenant", "set", name, "--cors-origin", "http://localhost:5173", *common]) == ExitStatus.OK
    assert stored() == ["http://localhost:5173"]  # set replaces the list
    assert run(["tenant", "set", name, "--no-cors-origins", "--cors-origin", "https://a.example", *common]) == \
        ExitStatus.USAGE
    assert run(["tenant", "set", name, "--no-cors-origins", *common]) == ExitStatus.OK
    assert stored() == []


def test_cli_sets_the_admin_page_login_from_the_environment_or_stdin(
    database: Database, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = slug()
    common = ["--admin-url", database.admin_url, "--owner-role", database.layout.owner_role,
              "--app-role", database.layout.app_role]
    TenantAdmin(database.admin_url, database.layout).add(NewTenant(name, "Shop", "pro", "SB-Mid-server-ADMINPW1", "sandbox"))

    def stored() -> tuple[str, str, str]:
        with psycopg.connect(database.admin_url) as conn:
            row = conn.execute("SELECT admin_user, admin_password_scrypt, admin_session_key FROM payments.tenant_secrets s "
                               "JOIN payments.tenants t ON t.id = s.tenant_id WHERE slug = %s", (name,)).fetchone()
        assert row is not None
        return row

    monkeypatch.setenv("SHOP_ADMIN_PASSWORD", "from the environment")
    assert run(["tenant", "set", name, "--admin-user", "siti", "--admin-password-env", "SHOP_ADMIN_PASSWORD",
                *common]) == ExitStatus.OK
    assert "siti may sign in to the admin page" in capsys.readouterr().out
    user, hashed, session_key = stored()
    assert user == "siti" and verify_password("from the environment", hashed) and "environment" not in hashed

    monkeypatch.setattr("sys.stdin", io.StringIO("typed on standard input\n"))
    assert run(["tenant", "set", name, "--admin-user", "budi", *common]) == ExitStatus.OK
    user, hashed, new_key = stored()
    assert user == "budi" and verify_password("typed on standard input", hashed)
    assert new_key != session_key  # earlier sessions end

    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert run(["tenant", "set", name, "--admin-user", "budi", *common]) == ExitStatus.INVALID
    assert "12 to 1024 characters" in capsys.readouterr().err
    assert run(["tenant", "set", name, "--admin-password-env", "SHOP_ADMIN_PASSWORD", *common]) == ExitStatus.USAGE
    assert stored()[0] == "budi"

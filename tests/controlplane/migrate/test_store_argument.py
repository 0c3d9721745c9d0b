"""A v1 store named again in a printed command (`--from`): exactly as given, but for a password."""

from __future__ import annotations

import pytest

from controlplane.cli import run
from controlplane.errors import ExitStatus
from controlplane.migrate import store_for
from controlplane.migrate.stores import PostgresStore


def test_a_store_is_named_again_as_given_with_its_password_replaced() -> None:
    with_options = "postgresql:///postgres?user=postgres&host=%2Ftmp%2Fpg&options=-c%20search_path%3Dlegacy_v1"
    assert store_for(with_options).argument == with_options  # the schema option kept: no password to hide
    secret = "postgresql://api:s3cret@db.internal:5432/shop?sslmode=require"
    argument = store_for(secret).argument
    assert argument == "postgresql://api:PASSWORD@db.internal:5432/shop?sslmode=require"
    assert "s3cret" not in argument and "s3cret" not in store_for(secret).name
    assert store_for("sqlite:/var/www/api/orders.db").argument == "sqlite:/var/www/api/orders.db"


def test_a_password_in_the_query_or_in_key_value_form_is_replaced_too() -> None:
    assert store_for("postgresql://u@h/db?password=s3cret").argument == "postgresql://u@h/db?password=PASSWORD"
    assert store_for("postgresql:///db?host=%2Ftmp&sslpassword=k3y&sslmode=require").argument == \
        "postgresql:///db?host=%2Ftmp&sslpassword=PASSWORD&sslmode=require"
    both = store_for("postgresql://u:pw@h:5432/db?password=s3cret").argument
    assert both == "postgresql://u:PASSWORD@h:5432/db?password=PASSWORD"
    assert "s3cret" not in PostgresStore("host=h user=u password=s3cret sslpassword=s3cret dbname=d").argument


def test_a_password_on_the_command_line_is_refused_before_anything_connects(
        capsys: pytest.CaptureFixture[str]) -> None:
    for store in ("postgresql://u:s3cret@127.0.0.1:9/db", "postgresql://u@127.0.0.1:9/db?password=s3cret"):
        for command in (["reverse-sync", "--from", store, "--tenant", "shop"],
                        ["migrate", "--from", store, "--tenant", "shop"]):
            assert run(command) == ExitStatus.USAGE, command
            err = capsys.readouterr().err
            assert "--from carries a password" in err and "PGPASSWORD" in err and "s3cret" not in err

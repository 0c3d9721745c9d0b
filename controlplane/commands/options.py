"""Options several commands share: database URLs from a flag or the environment, secrets, layouts."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from controlplane.db.layout import DatabaseLayout
from controlplane.errors import UsageProblem

if TYPE_CHECKING:
    from controlplane.migrate import V1Store


def database_layout(ns: argparse.Namespace) -> DatabaseLayout:
    return DatabaseLayout(schema=ns.schema, owner_role=ns.owner_role, app_role=ns.app_role,
                          router_role=ns.router_role, control_role=ns.control_role)

def flag_or_env(value: str | None, env: str, flag: str) -> str:
    found = value or os.environ.get(env)
    if not found:
        raise UsageProblem(f"missing: pass {flag} or set {env}")
    return found

def admin_url(ns: argparse.Namespace) -> str:
    return flag_or_env(ns.admin_url, "DUALSTACK_ADMIN_URL", "--admin-url")

def secret_arg(value: str | None, env_name: str | None) -> str | None:
    if env_name:
        secret = os.environ.get(env_name)
        if not secret:
            raise UsageProblem(f"environment variable {env_name} is empty or unset")
        return secret
    if value == "-":
        return sys.stdin.readline().strip()
    return value

def state_url(ns: argparse.Namespace) -> str:
    return flag_or_env(ns.state_database_url, "DUALSTACK_STATE_DATABASE_URL", "--state-database-url")

def notify_url(ns: argparse.Namespace) -> str | None:
    return getattr(ns, "notify_url", None) or os.environ.get("DUALSTACK_NOTIFY_URL")  # optional

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_s(text: str, flag: str) -> float:
    """`90s`, `15m`, `2h`, `7d` as seconds."""
    number, unit = text[:-1], text[-1:]
    if not number.isdigit() or unit not in _UNITS_S:
        raise UsageProblem(f"{flag} '{text}': use a whole number with s, m, h or d (e.g. 15m)")
    return int(number) * _UNITS_S[unit]


def rate_per_s(text: str, flag: str) -> float:
    """`5/s` or `120/m` as calls per second."""
    number, _, unit = text.partition("/")
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if value <= 0 or unit not in ("s", "m"):
        raise UsageProblem(f"{flag} '{text}': use calls per second or minute (e.g. 5/s, 120/m)")
    return value if unit == "s" else value / 60


def core_url_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--core-url-sandbox", help="Midtrans' sandbox Core API base, for Get Status (default: "
                        "$DUALSTACK_MIDTRANS_CORE_URL_SANDBOX, else Midtrans' own)")
    parser.add_argument("--core-url-production", help="the production Core API base (default: "
                        "$DUALSTACK_MIDTRANS_CORE_URL_PRODUCTION, else Midtrans' own)")


def v1_store_options(parser: argparse.ArgumentParser, purpose: str) -> None:
    """`--from STORE` (and `--sqlite PATH`, its older spelling): which of v1's stores to read."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--from", dest="v1_from", metavar="STORE",
                       help=f"v1's store, {purpose}, read-only: sqlite:PATH (the orders.db file) or "
                       "postgresql://USER@HOST/DB (the payment_orders table; password from PGPASSWORD or "
                       "~/.pgpass, so it stays out of the process list)")
    group.add_argument("--sqlite", metavar="PATH", help="same as --from sqlite:PATH")


def v1_store(ns: argparse.Namespace) -> V1Store | None:
    from controlplane.migrate import store_for

    if ns.sqlite:
        return store_for(f"sqlite:{ns.sqlite}")
    if not ns.v1_from:
        return None
    from controlplane.migrate.stores import PostgresStore

    store = store_for(ns.v1_from)
    if isinstance(store, PostgresStore) and store.carries_password:
        raise UsageProblem("--from carries a password, which every user of this machine sees in the process "
                           "list (ps): name the store without it and put the password in PGPASSWORD (a "
                           "systemd unit's EnvironmentFile) or ~/.pgpass")
    return store

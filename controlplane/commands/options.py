"""Options several commands share: database URLs from a flag or the environment, secrets, layouts."""

from __future__ import annotations

import argparse
import os
import sys

from controlplane.db.layout import DatabaseLayout
from controlplane.errors import UsageProblem


def database_layout(ns: argparse.Namespace) -> DatabaseLayout:
    return DatabaseLayout(schema=ns.schema, owner_role=ns.owner_role, app_role=ns.app_role)

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

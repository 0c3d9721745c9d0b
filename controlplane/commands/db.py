"""`dualstack db migrate` and `dualstack tenant ...`: the v2 database and its tenants."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import os
import sys

from controlplane.commands.options import admin_url, database_layout, secret_arg
from controlplane.errors import ExitStatus, UsageProblem
from controlplane.state.schema import STATE_SCHEMA


def cmd_db_migrate(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.db.migrate import bundled_migrations, migrate

    layout = database_layout(ns)
    package = "controlplane.db"
    # The state schema (locks, rollouts, shadow results): the router's role reads locks and writes
    # shadow results, the control role (decider, CLI) writes locks; v2's application role has none.
    if ns.target == "state":
        layout = dataclasses.replace(layout, schema=ns.schema if ns.schema != "payments" else STATE_SCHEMA)
        package = "controlplane.state"
    report = migrate(admin_url(ns), layout, app_password=os.environ.get("DUALSTACK_APP_PASSWORD"),
                     router_password=os.environ.get("DUALSTACK_ROUTER_PASSWORD"),
                     control_password=os.environ.get("DUALSTACK_CONTROL_PASSWORD"),
                     migrations=bundled_migrations(package))
    for role in report.roles_created:
        print(f"created role {role}")
    for version in report.applied:
        print(f"applied migration {version}")
    print(f"schema {layout.schema} is up to date ({len(report.applied)} applied now, "
          f"{len(report.already_applied)} already applied)")
    return ExitStatus.OK

def cmd_tenant(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.db.tenants import NewTenant, TenantAdmin, email_problem

    admin = TenantAdmin(admin_url(ns), database_layout(ns))
    if ns.tenant_command == "add":
        key = secret_arg(ns.midtrans_server_key, ns.midtrans_server_key_env)
        if not key:
            raise UsageProblem("a Midtrans server key is required: --midtrans-server-key KEY "
                               "(or - to read it from standard input, or --midtrans-server-key-env VAR)")
        token = admin.add(NewTenant(
            slug=ns.slug, name=ns.name, plan=ns.plan, midtrans_server_key=key,
            midtrans_environment=ns.midtrans_environment, midtrans_client_key=ns.midtrans_client_key,
            midtrans_merchant_id=ns.midtrans_merchant_id, email_from=ns.email_from,
            email_reply_to=ns.email_reply_to, max_orders_per_month=ns.max_orders_per_month,
            email_language=ns.email_language or "id", smtp_host=ns.smtp_host, smtp_port=ns.smtp_port,
            smtp_security=ns.smtp_security or "starttls", smtp_credential=ns.smtp_credential,
            finish_url=ns.finish_url, cors_origins=tuple(ns.cors_origin or ())))
        print(f"tenant {ns.slug} added ({ns.plan}, {ns.midtrans_environment})")
        print(f"admin token for GET /admin/stats (shown once, stored hashed): {token}")
    elif ns.tenant_command == "list":
        rows = admin.list()
        print(f"{'slug':20} {'status':10} {'plan':10} {'limit':>6} {'env':10} {'server key':24} {'email relay':36} "
              "name")
        for r in rows:
            limit = "-" if r["max_orders_per_month"] is None else str(r["max_orders_per_month"])
            print(f"{r['slug']:20} {r['status']:10} {r['plan']:10} {limit:>6} {r['midtrans_environment']:10} "
                  f"{r['midtrans_server_key']:24} {_relay_column(r):36} {r['name']}")
        print(f"{len(rows)} tenant(s)")
        cannot = [(r["slug"], why) for r in rows if r["status"] != "cancelled" and (why := email_problem(r))]
        for slug, why in cannot:
            print(f"warning: tenant {slug}: {why}: its customers' emails wait in v2's outbox "
                  f"(`dualstack tenant set {slug} --smtp-host HOST --email-from ADDRESS ...`)", file=sys.stderr)
    elif ns.tenant_command == "set":
        changes = dict(name=ns.name, plan=ns.plan, status=ns.status, max_orders_per_month=ns.max_orders_per_month,
                       midtrans_server_key=secret_arg(ns.midtrans_server_key, ns.midtrans_server_key_env),
                       midtrans_environment=ns.midtrans_environment, midtrans_client_key=ns.midtrans_client_key,
                       midtrans_merchant_id=ns.midtrans_merchant_id, email_from=ns.email_from,
                       email_reply_to=ns.email_reply_to, email_language=ns.email_language, smtp_host=ns.smtp_host,
                       smtp_port=ns.smtp_port, smtp_security=ns.smtp_security, smtp_credential=ns.smtp_credential,
                       finish_url=ns.finish_url, cors_origins=[] if ns.no_cors_origins else ns.cors_origin)
        if ns.no_cors_origins and ns.cors_origin:
            raise UsageProblem("--cors-origin and --no-cors-origins contradict each other: pass one")
        if ns.admin_password_env and not ns.admin_user:
            raise UsageProblem("--admin-password-env goes with --admin-user NAME")
        if ns.admin_user:
            admin.set_admin_login(ns.slug, ns.admin_user, _admin_password(ns.admin_password_env))
            print(f"tenant {ns.slug}: {ns.admin_user} may sign in to the admin page (earlier sessions ended)")
        if ns.grace_minutes is not None:
            admin.open_grace_window(ns.slug, ns.grace_minutes)
            print(f"tenant {ns.slug}: for {ns.grace_minutes:g} min, notifications for orders v2 does not know yet "
                  "are answered so that Midtrans retries")
        if (ns.grace_minutes is None and not ns.admin_user) or any(v is not None for v in changes.values()):
            admin.set(ns.slug, **changes)
            print(f"tenant {ns.slug} updated")
    elif ns.tenant_command in ("suspend", "resume"):
        status = "suspended" if ns.tenant_command == "suspend" else "active"
        admin.set(ns.slug, status=status)
        print(f"tenant {ns.slug} is now {status}" + (
            " (payments already made still settle; new orders are refused)" if status == "suspended" else ""))
    elif ns.tenant_command == "rotate-token":
        print(f"new admin token for {ns.slug} (shown once): {admin.rotate_admin_token(ns.slug)}")
    return ExitStatus.OK


def _admin_password(env_name: str | None) -> str:
    """From the named environment variable, else standard input (asked for, unechoed, on a terminal)."""
    if env_name:
        return secret_arg(None, env_name) or ""
    if sys.stdin.isatty():
        return getpass.getpass("admin password: ")
    return sys.stdin.readline(4096).rstrip("\r\n")  # longer than any allowed password: refused after


def _relay_column(row: dict[str, object]) -> str:
    if not row["smtp_host"]:
        return "NONE"
    port = row["smtp_port"] or {"starttls": 587, "tls": 465, "none": 25}[str(row["smtp_security"])]
    credential = f" as {row['smtp_credential']}" if row["smtp_credential"] else ""
    return f"{row['smtp_host']}:{port} {row['smtp_security']}{credential}"

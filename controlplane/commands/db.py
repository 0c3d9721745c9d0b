"""`dualstack db migrate` and `dualstack tenant ...`: the v2 database and its tenants."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from controlplane.commands.options import admin_url, database_layout, flag_or_env, secret_arg
from controlplane.db.layout import DatabaseLayout
from controlplane.errors import ExitStatus, UsageProblem
from controlplane.shadow.samples import STATE_SCHEMA


def cmd_db_migrate(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.db.migrate import bundled_migrations, migrate

    password = os.environ.get("DUALSTACK_APP_PASSWORD")
    layout = database_layout(ns)
    folder = "migrations"
    if ns.target == "state":  # the control plane's own schema (shadow results), same roles
        layout = DatabaseLayout(schema=ns.schema if ns.schema != "payments" else STATE_SCHEMA,
                                owner_role=ns.owner_role, app_role=ns.app_role)
        folder = "state_migrations"
    report = migrate(admin_url(ns), layout, app_password=password, migrations=bundled_migrations(folder))
    for role in report.roles_created:
        print(f"created role {role}")
    for version in report.applied:
        print(f"applied migration {version}")
    print(f"schema {layout.schema} is up to date ({len(report.applied)} applied now, "
          f"{len(report.already_applied)} already applied)")
    return ExitStatus.OK

def cmd_tenant(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.db.tenants import NewTenant, TenantAdmin

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
            email_reply_to=ns.email_reply_to, max_orders_per_month=ns.max_orders_per_month))
        print(f"tenant {ns.slug} added ({ns.plan}, {ns.midtrans_environment})")
        print(f"admin token for GET /admin/stats (shown once, stored hashed): {token}")
    elif ns.tenant_command == "list":
        rows = admin.list()
        print(f"{'slug':20} {'status':10} {'plan':10} {'limit':>6} {'env':10} {'server key':24} name")
        for r in rows:
            limit = "-" if r["max_orders_per_month"] is None else str(r["max_orders_per_month"])
            print(f"{r['slug']:20} {r['status']:10} {r['plan']:10} {limit:>6} {r['midtrans_environment']:10} "
                  f"{r['midtrans_server_key']:24} {r['name']}")
        print(f"{len(rows)} tenant(s)")
    elif ns.tenant_command == "set":
        changes = dict(name=ns.name, plan=ns.plan, status=ns.status, max_orders_per_month=ns.max_orders_per_month,
                       midtrans_server_key=secret_arg(ns.midtrans_server_key, ns.midtrans_server_key_env),
                       midtrans_environment=ns.midtrans_environment, midtrans_client_key=ns.midtrans_client_key,
                       midtrans_merchant_id=ns.midtrans_merchant_id, email_from=ns.email_from,
                       email_reply_to=ns.email_reply_to)
        if ns.grace_minutes is not None:
            admin.open_grace_window(ns.slug, ns.grace_minutes)
            print(f"tenant {ns.slug}: for {ns.grace_minutes:g} min, notifications for orders v2 does not know yet "
                  "are answered so that Midtrans retries")
        if ns.grace_minutes is None or any(v is not None for v in changes.values()):
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


def cmd_migrate_sqlite(ns: argparse.Namespace) -> ExitStatus:
    import time

    from controlplane.migrate_sqlite import migrate_sqlite
    from controlplane.progress import ProgressDisplay

    url = flag_or_env(ns.database_url, "DUALSTACK_DATABASE_URL", "--database-url")
    first = True
    while True:
        # Progress for the first pass (the long one); --follow's later passes are one line each.
        progress = ProgressDisplay(sys.stderr) if first else None
        try:
            report = migrate_sqlite(Path(ns.sqlite), url, ns.tenant, ns.schema, dry_run=ns.dry_run,
                                    progress=progress)
        finally:
            if progress is not None:
                progress.close()
        first = False
        rate = report.read / report.seconds if report.seconds else 0.0
        print(f"{'dry run: ' if ns.dry_run else ''}{report.read} v1 rows read in {report.seconds:.1f}s "
              f"({rate:,.0f}/s): {report.inserted} inserted, {report.updated} updated, {report.unchanged} unchanged "
              f"({report.kept_newer} newer on v2, kept), {len(report.bad)} bad, {len(report.differences)} different",
              flush=True)
        for order_id, why in report.bad:
            print(f"  bad row {order_id}: {why} (not migrated)")
        for order_id, what in report.differences:
            print(f"  difference {order_id}: {what}")
        if not ns.follow:
            return ExitStatus.OK if report.clean and not report.bad else ExitStatus.INVALID
        time.sleep(ns.interval)

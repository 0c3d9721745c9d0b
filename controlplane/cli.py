"""`dualstack`: the operator's command line. A thin shell: parse, call an operation, map the outcome
to an exit code in one place (`run`).

Data-plane processes (the router) are started as their own program (`python -m proxy`), so the
control plane never imports the data plane.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

import psycopg

from controlplane.commands.cutover import cmd_cutover
from controlplane.commands.db import cmd_db_migrate, cmd_migrate_sqlite, cmd_tenant
from controlplane.commands.nginx import cmd_nginx
from controlplane.commands.rollout import (
    cmd_rollout_decide,
    cmd_rollout_explain,
    cmd_rollout_locks,
    cmd_rollout_manual,
    cmd_rollout_simulate,
)
from controlplane.commands.shadow import cmd_shadow_report
from controlplane.config import ConfigError, load_config
from controlplane.cutover import CHECKS, CutoverStopped
from controlplane.db.migrate import MigrationError
from controlplane.db.tenants import TenantError
from controlplane.errors import EnvironmentProblem, ExitStatus, UsageProblem
from controlplane.migrate_sqlite import MigrationProblem
from controlplane.render.apply import NginxFailure
from controlplane.render.nginx import RenderError
from controlplane.shadow.samples import STATE_SCHEMA


def cmd_validate(ns: argparse.Namespace) -> ExitStatus:
    config = load_config(ns.file)
    print(f"{ns.file}: OK: {config.summary()}")
    return ExitStatus.OK


# Commands that are their own programs (data-plane processes and local stand-ins): argv prefix ->
# (module, program name). They are exec'd, so their signals and exit codes are their own.
PROGRAMS: dict[tuple[str, ...], tuple[str, str]] = {
    ("serve",): ("proxy", "dualstack serve"),
    ("v2", "serve"): ("proxy.v2", "dualstack v2 serve"),
    ("fake-midtrans",): ("standins.midtrans", "dualstack fake-midtrans"),
    ("legacy-v1",): ("standins.legacy_v1", "dualstack legacy-v1"),
}


def exec_program(module: str, prog: str, args: Sequence[str]) -> NoReturn:
    """Replace this process with `python -m module`, so signals and exit codes are its own."""
    env = dict(os.environ, DUALSTACK_PROG=prog)
    argv = [sys.executable, "-m", module, *args]
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)


def cmd_demo(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.demo import run_demo

    return ExitStatus(run_demo(state_dir=ns.state_dir, router_port=ns.port, workers=ns.workers,
                               database_url=ns.database_url))


Command = Callable[[argparse.Namespace], ExitStatus]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dualstack",
        description="Move tenants from v1 to v2 one at a time, safely. "
        "Routing is declared in a YAML file (see configs/routing.example.yaml).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check a routing file; print every issue as file:line: path: message")
    p.add_argument("file")
    p.set_defaults(func=cmd_validate)

    # Programs in PROGRAMS are dispatched in run() before parsing: their options are their own.
    sub.add_parser("serve", help="run the router (see `dualstack serve --help`)", add_help=False)
    v2 = sub.add_parser("v2", help="the v2 payment service: `dualstack v2 serve --help`", add_help=False)
    v2.add_argument("action", choices=["serve"])
    sub.add_parser("fake-midtrans", help="a local stand-in for Midtrans (Snap and signed notifications)",
                   add_help=False)
    sub.add_parser("legacy-v1", help="a stand-in for the legacy v1 payment API (SQLite)", add_help=False)

    p = sub.add_parser("db", help="database administration")
    db_sub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    m = db_sub.add_parser("migrate", help="create roles and schema, apply pending migrations (re-runnable)")
    m.add_argument("--target", choices=["payments", "state"], default="payments",
                   help="payments: v2's schema; state: the control plane's (shadow results), default schema "
                   f"{STATE_SCHEMA}")
    _db_options(m)
    m.set_defaults(func=cmd_db_migrate)

    p = sub.add_parser("migrate", help="move a tenant's v1 orders into v2")
    mig_sub = p.add_subparsers(dest="migrate_command", required=True, metavar="SOURCE")
    mig = mig_sub.add_parser("sqlite", help="v1's orders.db (read-only) into v2, idempotent, verified")
    mig.add_argument("--sqlite", required=True, help="v1's orders.db (opened read-only)")
    mig.add_argument("--tenant", required=True, help="the v2 tenant these orders belong to")
    mig.add_argument("--database-url", help="v2's application role (default: $DUALSTACK_DATABASE_URL)")
    mig.add_argument("--schema", default="payments")
    mig.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")
    mig.add_argument("--follow", action="store_true", help="keep syncing new and changed v1 rows until stopped")
    mig.add_argument("--interval", type=float, default=5.0, help="seconds between syncs with --follow")
    mig.set_defaults(func=cmd_migrate_sqlite)

    p = sub.add_parser("tenant", help="add, list, change and suspend tenants of v2")
    t_sub = p.add_subparsers(dest="tenant_command", required=True, metavar="ACTION")
    add = t_sub.add_parser("add", help="add a tenant (prints its admin token once)")
    add.add_argument("slug")
    add.add_argument("--name", required=True)
    add.add_argument("--plan", required=True, choices=["starter", "pro", "enterprise"])
    add.add_argument("--midtrans-environment", required=True, choices=["sandbox", "production"])
    _tenant_fields(add)
    lst = t_sub.add_parser("list", help="list tenants (secrets masked)")
    st = t_sub.add_parser("set", help="change a tenant's fields")
    st.add_argument("slug")
    st.add_argument("--name")
    st.add_argument("--plan", choices=["starter", "pro", "enterprise"])
    st.add_argument("--status", choices=["active", "suspended", "cancelled"])
    st.add_argument("--midtrans-environment", choices=["sandbox", "production"])
    st.add_argument("--grace-minutes", type=float, help="for this long, answer notifications for orders v2 does "
                    "not know yet so that Midtrans retries (used around a cutover)")
    _tenant_fields(st)
    sus = t_sub.add_parser("suspend", help="refuse new orders (payments still settle)")
    sus.add_argument("slug")
    res = t_sub.add_parser("resume", help="make a suspended tenant active again")
    res.add_argument("slug")
    rot = t_sub.add_parser("rotate-token", help="replace a tenant's admin token")
    rot.add_argument("slug")
    for parser_ in (add, lst, st, sus, res, rot):
        _db_options(parser_)
        parser_.set_defaults(func=cmd_tenant)

    p = sub.add_parser("nginx", help="generate, test and apply nginx includes from the routing file")
    n_sub = p.add_subparsers(dest="nginx_command", required=True, metavar="ACTION")
    r = n_sub.add_parser("render", help="write the includes (byte-identical for the same input)")
    r.add_argument("--out", required=True, help="the directory nginx will include them from")
    r.add_argument("--diff", action="store_true", help="show what would change in --out; write nothing")
    c = n_sub.add_parser("check", help="run the real nginx -t on the rendered includes")
    a = n_sub.add_parser("apply", help="render, test, swap atomically, reload, verify; restore on failure")
    a.add_argument("--dir", required=True, help="the live directory (a symlink to the current release)")
    a.add_argument("--reload-command", default="nginx -s reload")
    a.add_argument("--nginx-conf", help="test this main config after the swap (e.g. /etc/nginx/nginx.conf)")
    a.add_argument("--verify-url", help="where the new version must show (default: first listen port on "
                   "127.0.0.1, path /__dualstack/version)")
    for parser_ in (r, c, a):
        parser_.add_argument("--config", required=True, help="the routing file")
        parser_.set_defaults(func=cmd_nginx)

    p = sub.add_parser("shadow", help="shadow comparison reports")
    s_sub = p.add_subparsers(dest="shadow_command", required=True, metavar="ACTION")
    rep = s_sub.add_parser("report", help="comparisons, match rate with its confidence interval, endpoints, "
                           "differing fields (redacted), latency and mismatch charts")
    rep.add_argument("--tenant", required=True)
    rep.add_argument("--since", default="24h", help="30m, 24h, 7d or an ISO timestamp (default 24h)")
    rep.add_argument("--format", choices=["html", "json", "md"], default="html")
    rep.add_argument("--out", required=True, help="a file, or - for standard output")
    rep.add_argument("--state-database-url", help="default: $DUALSTACK_STATE_DATABASE_URL")
    rep.add_argument("--schema", default=STATE_SCHEMA)
    rep.set_defaults(func=cmd_shadow_report)

    p = sub.add_parser("rollout", help="the go/no-go decisions of a tenant's move to v2")
    r_sub = p.add_subparsers(dest="rollout_command", required=True, metavar="ACTION")
    sim = r_sub.add_parser("simulate", help="replay synthetic traffic through the real decision code "
                           "(detection times, false rollbacks)")
    sim.add_argument("--seeds", type=int, default=20)
    sim.set_defaults(func=cmd_rollout_simulate)
    status = r_sub.add_parser("status", help="declared and effective backend of every tenant, and why")
    status.add_argument("--config", required=True, help="the routing file")
    back = r_sub.add_parser("rollback", help="pin a tenant to v1 now, overriding the routing file")
    back.add_argument("slug")
    back.add_argument("--config", required=True, help="the routing file")
    back.add_argument("--reason", required=True, help="why (recorded, and shown by status)")
    ack = r_sub.add_parser("ack", help="release a tenant's rollback lock: the routing file decides again")
    ack.add_argument("slug")
    dec = r_sub.add_parser("decide", help="decide for every tenant soaking on v2 (and act, unless --dry-run)")
    dec.add_argument("--config", required=True, help="the routing file")
    evidence = dec.add_mutually_exclusive_group(required=True)
    evidence.add_argument("--prometheus-url", help="e.g. http://127.0.0.1:9090")
    evidence.add_argument("--metrics-url", action="append", help="a router's /metrics, read directly when no "
                          "Prometheus runs (repeat for each router)")
    dec.add_argument("--once", action="store_true", help="one pass (for a systemd timer)")
    dec.add_argument("--interval", type=float, default=60.0, help="seconds between passes")
    dec.add_argument("--dry-run", action="store_true", help="record what would be done; do nothing")
    dec.set_defaults(func=cmd_rollout_decide)
    manual = []
    for name, text in (("promote", "promote a tenant now (ends its soak as a success)"),
                       ("hold", "stop automatic actions for a tenant (evidence is still recorded)"),
                       ("resume", "let the decider act on a held tenant again")):
        m = r_sub.add_parser(name, help=text)
        m.add_argument("slug")
        m.add_argument("--reason", required=True, help="why (recorded, and in the notification)")
        m.set_defaults(func=cmd_rollout_manual)
        manual.append(m)
    exp = r_sub.add_parser("explain", help="the story of a tenant's rollout, decision by decision")
    exp.add_argument("slug")
    exp.add_argument("--limit", type=int, default=20)
    exp.set_defaults(func=cmd_rollout_explain)
    for parser_ in (status, back, ack, dec, exp, *manual):
        parser_.add_argument("--state-database-url", help="default: $DUALSTACK_STATE_DATABASE_URL")
        parser_.add_argument("--schema", default=STATE_SCHEMA)
        if parser_ in (status, back, ack):
            parser_.set_defaults(func=cmd_rollout_locks)
        if parser_ not in (status, exp):
            parser_.add_argument("--notify-url", help="Slack-compatible webhook for every action "
                                 "(default: $DUALSTACK_NOTIFY_URL)")

    p = sub.add_parser("cutover", help="move one tenant to v2 (or back to v1): preflight checks, final sync, flip, "
                       "routers confirm, catch-up sync, soak")
    p.add_argument("slug")
    p.add_argument("--to", required=True, choices=["v1", "v2"])
    p.add_argument("--config", required=True, help="the routing file (edited in place, comments kept)")
    p.add_argument("--sqlite", help="v1's orders.db, for the migration check and syncs (read-only)")
    p.add_argument("--database-url", help="v2's application role (default: $DUALSTACK_DATABASE_URL)")
    p.add_argument("--router-admin-url", action="append", help="a router's admin address (repeat for each): "
                   "the cutover waits until every one serves the new backend")
    p.add_argument("--state-database-url", help="shadow results, rollouts and the cutover record "
                   "(default: $DUALSTACK_STATE_DATABASE_URL)")
    p.add_argument("--state-schema", default=STATE_SCHEMA)
    p.add_argument("--override", action="append", choices=list(CHECKS),
                   help="go on although this check failed (repeatable; needs --reason, which is recorded)")
    p.add_argument("--reason", help="why the overrides are acceptable (recorded with the cutover)")
    p.add_argument("--no-nginx", action="store_true", help="skip the nginx check (no nginx in front of the router)")
    p.add_argument("--preflight-only", action="store_true", help="run the checks, print them, change nothing")
    _db_options(p)
    p.set_defaults(func=cmd_cutover)

    p = sub.add_parser("demo", help="run the whole stack locally on embedded defaults")
    p.add_argument("--state-dir", default=".dualstack-demo", help="where the demo keeps its files")
    p.add_argument("--port", type=int, default=8080, help="the router's port (admin: port + 1020)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--database-url", help="a PostgreSQL admin URL (default: $DATABASE_URL, else an embedded "
                   "server under the state folder)")
    p.set_defaults(func=cmd_demo)
    return parser


def _db_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--admin-url", help="PostgreSQL URL of a role that may create roles "
                        "(default: $DUALSTACK_ADMIN_URL)")
    parser.add_argument("--schema", default="payments")
    parser.add_argument("--owner-role", default="dualstack_owner")
    parser.add_argument("--app-role", default="dualstack_app")


def _tenant_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--midtrans-server-key", help="the server key; - reads it from standard input")
    parser.add_argument("--midtrans-server-key-env", metavar="VAR",
                        help="read the server key from this environment variable (keeps it out of ps)")
    parser.add_argument("--midtrans-client-key")
    parser.add_argument("--midtrans-merchant-id")
    parser.add_argument("--email-from")
    parser.add_argument("--email-reply-to")
    parser.add_argument("--max-orders-per-month", type=int, help="override the plan's monthly limit")


def run(argv: Sequence[str] | None = None) -> ExitStatus:
    """Parse and dispatch; the one place where outcomes become exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    for prefix, (module, prog) in PROGRAMS.items():
        if tuple(args[: len(prefix)]) == prefix:
            exec_program(module, prog, args[len(prefix):])
    ns = build_parser().parse_args(args)
    func: Command = ns.func
    try:
        return func(ns)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{len(exc.issues)} issue(s) found", file=sys.stderr)
        return ExitStatus.INVALID
    except (EnvironmentProblem, psycopg.OperationalError) as exc:
        print(f"dualstack: {_first_line(exc)}", file=sys.stderr)
        return ExitStatus.ENVIRONMENT
    except (UsageProblem, ValueError) as exc:
        print(f"dualstack: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    except CutoverStopped as exc:
        print(f"dualstack: cutover stopped: {exc}", file=sys.stderr)
        return ExitStatus.INVALID
    except (TenantError, MigrationError, NginxFailure, RenderError, MigrationProblem) as exc:
        print(f"dualstack: {exc}", file=sys.stderr)
        return ExitStatus.INVALID
    except KeyboardInterrupt:
        return ExitStatus.OK


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    return int(run(argv))

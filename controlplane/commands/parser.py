"""The `dualstack` command line's grammar: every subcommand, its options (each with its default shown in
--help) and the operation it calls. `controlplane/cli.py` runs it and maps outcomes to exit codes."""

from __future__ import annotations

import argparse

from controlplane.arguments import Parser
from controlplane.commands.completion import cmd_completion
from controlplane.commands.cutover import cmd_cutover
from controlplane.commands.db import cmd_db_migrate, cmd_tenant
from controlplane.commands.migrate import add_migrate_parser
from controlplane.commands.nginx import cmd_nginx
from controlplane.commands.options import v1_store_options
from controlplane.commands.outbox import cmd_outbox
from controlplane.commands.reconcile import add_reconcile_parser
from controlplane.commands.reverse_sync import add_reverse_sync_parser
from controlplane.commands.rollout import (
    cmd_rollout_decide,
    cmd_rollout_explain,
    cmd_rollout_locks,
    cmd_rollout_manual,
    cmd_rollout_replay,
    cmd_rollout_simulate,
)
from controlplane.commands.shadow import cmd_shadow_report
from controlplane.commands.status import add_status_parser
from controlplane.config import load_config
from controlplane.cutover import CHECKS
from controlplane.errors import ExitStatus
from controlplane.state.schema import STATE_SCHEMA


def cmd_validate(ns: argparse.Namespace) -> ExitStatus:
    config = load_config(ns.file)
    print(f"{ns.file}: OK: {config.summary()}")
    return ExitStatus.OK


# Commands that are their own programs (data-plane processes and local stand-ins): argv prefix ->
# (module, program name). They are exec'd, so their signals and exit codes are their own.


def cmd_demo(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.demo import run_demo

    return ExitStatus(run_demo(state_dir=ns.state_dir, port_base=ns.port_base, workers=ns.workers,
                               database_url=ns.database_url))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dualstack")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="dualstack",
        description="Move tenants from v1 to v2 one at a time, safely. "
        "Routing is declared in a YAML file (see configs/routing.example.yaml).",
        epilog="Where to start: `dualstack demo` runs the whole stack locally and prints commands to try. "
        "In production, follow the README's production guide: db migrate, tenant add, v2 serve, serve, "
        "nginx apply, migrate --from ... --follow, cutover. Each command has --help.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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
    sub.add_parser("legacy-v1", help="a stand-in for the legacy v1 payment API (--store sqlite|postgresql)",
                   add_help=False)

    p = sub.add_parser("db", help="database administration")
    db_sub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    m = db_sub.add_parser("migrate", help="create roles and schema, apply pending migrations (re-runnable)")
    m.add_argument("--target", choices=["payments", "state"], default="payments",
                   help="payments: v2's schema; state: the control plane's (shadow results), default schema "
                   f"{STATE_SCHEMA}")
    _db_options(m)
    m.set_defaults(func=cmd_db_migrate)

    add_migrate_parser(sub)
    add_reverse_sync_parser(sub)

    p = sub.add_parser("tenant", help="add, list, change and suspend tenants of v2")
    t_sub = p.add_subparsers(dest="tenant_command", required=True, metavar="ACTION")
    add = t_sub.add_parser("add", help="add a tenant (prints its admin token once)")
    add.add_argument("slug")
    add.add_argument("--name", required=True, help="the tenant's display name")
    add.add_argument("--plan", required=True, choices=["starter", "pro", "enterprise"],
                     help="monthly order limit: starter 100, pro 1,000, enterprise unlimited")
    add.add_argument("--midtrans-environment", required=True, choices=["sandbox", "production"],
                     help="which Midtrans the tenant's keys belong to")
    _tenant_fields(add)
    lst = t_sub.add_parser("list", help="list tenants (secrets masked)")
    st = t_sub.add_parser("set", help="change a tenant's fields")
    st.add_argument("slug")
    st.add_argument("--name", help="a new display name")
    st.add_argument("--plan", choices=["starter", "pro", "enterprise"], help="a new plan (monthly order limit)")
    st.add_argument("--status", choices=["active", "suspended", "cancelled"],
                    help="suspended refuses new orders (payments still settle)")
    st.add_argument("--midtrans-environment", choices=["sandbox", "production"],
                    help="which Midtrans the tenant's keys belong to")
    st.add_argument("--grace-minutes", type=float, help="for this long, answer notifications for orders v2 does "
                    "not know yet so that Midtrans retries (used around a cutover)")
    _tenant_fields(st)
    st.add_argument("--no-cors-origins", action="store_true",
                    help="allow browsers on the tenant's own hosts only (clears --cors-origin)")
    st.add_argument("--admin-user", metavar="NAME",
                    help="who may sign in to the admin page (POST /admin/login); the password is read from "
                    "--admin-password-env VAR, else from standard input (never given here). Ends every session")
    st.add_argument("--admin-password-env", metavar="VAR",
                    help="with --admin-user: read the password from this environment variable")
    sus = t_sub.add_parser("suspend", help="refuse new orders (payments still settle)")
    sus.add_argument("slug")
    res = t_sub.add_parser("resume", help="make a suspended tenant active again")
    res.add_argument("slug")
    rot = t_sub.add_parser("rotate-token", help="replace a tenant's admin token")
    rot.add_argument("slug")
    for parser_ in (add, lst, st, sus, res, rot):
        _db_options(parser_)
        parser_.set_defaults(func=cmd_tenant)

    p = sub.add_parser("outbox", help="the customer emails v2 sends: list them, send dead-lettered ones again")
    o_sub = p.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    ol = o_sub.add_parser("list", help="a tenant's emails, newest first, with their status and last error")
    ol.add_argument("--status", action="append", choices=["pending", "sending", "sent", "dead", "skipped"],
                    help="only these (repeatable; default: all)")
    ol.add_argument("--limit", type=int, default=100, help="at most this many emails")
    orr = o_sub.add_parser("retry", help="make a dead (or skipped) email due again, with fresh attempts")
    which = orr.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the outbox row (`dualstack outbox list`)")
    which.add_argument("--all-dead", action="store_true", help="every dead-lettered email of the tenant")
    for parser_ in (ol, orr):
        parser_.add_argument("--tenant", required=True, help="the tenant's slug")
        _db_options(parser_)
        parser_.set_defaults(func=cmd_outbox)

    p = sub.add_parser("nginx", help="generate, test and apply nginx includes from the routing file")
    n_sub = p.add_subparsers(dest="nginx_command", required=True, metavar="ACTION")
    r = n_sub.add_parser("render", help="write the includes (byte-identical for the same input)")
    r.add_argument("--out", required=True, help="the directory nginx will include them from")
    r.add_argument("--diff", action="store_true", help="show what would change in --out; write nothing")
    c = n_sub.add_parser("check", help="run the real nginx -t on the rendered includes (with --dir: also on the "
                         "main nginx config, with the candidate in place, as apply tests it; needs root)")
    c.add_argument("--dir", help="the live directory nginx.conf includes: test the main config with the candidate "
                   "in its place (in a private mount namespace: nothing live changes)")
    a = n_sub.add_parser("apply", help="render, test, swap atomically, reload, verify; restore on failure")
    a.add_argument("--dir", required=True, help="the live directory (a symlink to the current release)")
    a.add_argument("--reload-command", help="how to make nginx re-read its config (default: SIGHUP to the master "
                   "named by the main config's pid file, as `nginx -s reload` does without parsing it all again)")
    for parser_ in (c, a):
        parser_.add_argument("--nginx-conf", help="the main config nginx runs with, tested with the candidate in "
                             "place (default: nginx's own, the one `nginx -s reload` uses)")
    a.add_argument("--verify-url", help="where the new version must show (default: first listen port on "
                   "127.0.0.1, path /__dualstack/version)")
    for parser_ in (r, c, a):
        parser_.add_argument("--config", required=True, help="the routing file")
        parser_.set_defaults(func=cmd_nginx)

    p = sub.add_parser("shadow", help="shadow comparison reports")
    s_sub = p.add_subparsers(dest="shadow_command", required=True, metavar="ACTION")
    rep = s_sub.add_parser("report", help="comparisons, match rate with its confidence interval, endpoints, "
                           "differing fields (redacted), latency and mismatch charts")
    rep.add_argument("--tenant", required=True, help="the tenant's slug")
    rep.add_argument("--since", default="24h", help="30m, 24h, 7d or an ISO timestamp (default 24h)")
    rep.add_argument("--format", choices=["html", "json", "md"], default="html",
                     help="html: one self-contained page with charts; json; md (Markdown)")
    rep.add_argument("--out", required=True, help="a file, or - for standard output")
    rep.add_argument("--state-database-url", help="default: $DUALSTACK_STATE_DATABASE_URL")
    rep.add_argument("--schema", default=STATE_SCHEMA, help="the state database's schema")
    rep.set_defaults(func=cmd_shadow_report)

    p = sub.add_parser("rollout", help="the go/no-go decisions of a tenant's move to v2")
    r_sub = p.add_subparsers(dest="rollout_command", required=True, metavar="ACTION")
    sim = r_sub.add_parser("simulate", help="replay synthetic traffic through the real decision code "
                           "(detection times, false rollbacks)")
    sim.add_argument("--seeds", type=int, default=5, help="soaks per case and traffic level (default 5)")
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
    rep = r_sub.add_parser("replay", help="the real decision at each step against what a Prometheus held then; "
                           "changes nothing; exits 0 go, 1 no-go, 4 inconclusive")
    rep.add_argument("slug")
    rep.add_argument("--prometheus-url", required=True, help="e.g. http://127.0.0.1:9090")
    rep.add_argument("--from", dest="start", required=True, help="ISO time (UTC unless it says) or unix seconds")
    rep.add_argument("--to", dest="end", required=True, help="ISO time or unix seconds")
    rep.add_argument("--step", default="60s", help="time between decisions: 60s, 5m, 1h (default 60s)")
    rep.add_argument("--soak-start", help="when the soak began (default: --from)")
    rep.add_argument("--config", help="the routing file, for the tenant's thresholds (default: the defaults)")
    rep.add_argument("--json", action="store_true", help="every decision with its checks, as JSON")
    rep.set_defaults(func=cmd_rollout_replay)
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
    exp.add_argument("--limit", type=int, default=20, help="the newest this many decisions and events")
    exp.set_defaults(func=cmd_rollout_explain)
    for parser_ in (status, back, ack, dec, exp, *manual):
        parser_.add_argument("--state-database-url", help="default: $DUALSTACK_STATE_DATABASE_URL")
        parser_.add_argument("--schema", default=STATE_SCHEMA, help="the state database's schema")
        if parser_ in (status, back, ack):
            parser_.set_defaults(func=cmd_rollout_locks)
        if parser_ not in (status, exp):
            parser_.add_argument("--notify-url", help="Slack-compatible webhook for every action "
                                 "(default: $DUALSTACK_NOTIFY_URL)")

    p = sub.add_parser("cutover", help="move one tenant to v2 (or back to v1): preflight checks, bulk sync, "
                       "the routers hold its writes for the final sync and the flip, release, routers confirm, soak; "
                       "each step journaled (`cutover status SLUG`)",
                       usage="%(prog)s SLUG --to {v1,v2} --config FILE [options]\n       %(prog)s status SLUG "
                       "[--json] [--state-database-url URL]\n       %(prog)s complete SLUG [--state-database-url URL]")
    p.add_argument("slug", metavar="SLUG", help="the tenant to move; run again after Ctrl-C or a crash to "
                   "continue from the journal")
    p.add_argument("status_of", nargs="?", metavar="SLUG", help="with `status`: print the journal of the "
                   "tenant's latest cutover; with `complete`: end the tenant's reverse sync (v2 -> v1) once sure")
    p.add_argument("--to", choices=["v1", "v2"], help="the backend to move the tenant to (required for a move)")
    p.add_argument("--config", help="the routing file (edited in place, comments kept; required for a move)")
    p.add_argument("--json", action="store_true", help="with `status`: the journal as JSON")
    v1_store_options(p, "for the migration check and syncs")
    p.add_argument("--database-url", help="v2's application role (default: $DUALSTACK_DATABASE_URL)")
    p.add_argument("--router-admin-url", action="append", help="a router's admin address (repeat for each): "
                   "the cutover waits until every one serves the new backend")
    p.add_argument("--state-database-url", help="shadow results, rollouts, the cutover record and the write "
                   "hold (default: $DUALSTACK_STATE_DATABASE_URL)")
    p.add_argument("--state-schema", default=STATE_SCHEMA, help="the state database's schema")
    p.add_argument("--override", action="append", choices=list(CHECKS),
                   help="go on although this check failed (repeatable; needs --reason, which is recorded)")
    p.add_argument("--reason", help="why the overrides are acceptable (recorded with the cutover)")
    p.add_argument("--no-nginx", action="store_true", help="skip the nginx check (no nginx in front of the router)")
    p.add_argument("--preflight-only", action="store_true", help="run the checks, print them, change nothing")
    _db_options(p)
    p.set_defaults(func=cmd_cutover)

    add_reconcile_parser(sub)
    add_status_parser(sub)

    p = sub.add_parser("demo", help="run the whole stack locally on embedded defaults")
    p.add_argument("--state-dir", default=".dualstack-demo", help="where the demo keeps its files")
    p.add_argument("--port-base", type=int, metavar="N",
                   help="move every port: router N, admin N+1, v1 N+2, v2 N+3, fake Midtrans N+4, v2's "
                   "metrics N+5 (default: 8080, 9100, 3002, 3010, 3900, 3011)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of the router and of v2 each")
    p.add_argument("--database-url", help="a PostgreSQL admin URL (default: $DATABASE_URL, else an embedded "
                   "server under the state folder)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("completion", help="print a shell completion script: "
                       "eval \"$(dualstack completion bash)\" in ~/.bashrc")
    p.add_argument("shell", choices=["bash", "zsh"])
    p.set_defaults(func=cmd_completion)
    return parser


def _db_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--admin-url", help="PostgreSQL URL of a role that may create roles "
                        "(default: $DUALSTACK_ADMIN_URL)")
    parser.add_argument("--schema", default="payments", help="v2's schema")
    parser.add_argument("--owner-role", default="dualstack_owner", help="the role that owns the schema's tables")
    parser.add_argument("--app-role", default="dualstack_app", help="v2's login role (reads and writes rows)")
    parser.add_argument("--router-role", default="dualstack_router",
                        help="the router's login role: payments: may only read one tenant's notification key by "
                        "slug; state: reads locks, writes shadow results")
    parser.add_argument("--control-role", default="dualstack_control",
                        help="state: the decider's and the CLI's login role, the one that writes locks and events "
                        "(password from $DUALSTACK_CONTROL_PASSWORD)")


def _tenant_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--midtrans-server-key", help="the server key; - reads it from standard input")
    parser.add_argument("--midtrans-server-key-env", metavar="VAR",
                        help="read the server key from this environment variable (keeps it out of ps)")
    parser.add_argument("--midtrans-client-key", help="the client key (public: Snap's pages use it)")
    parser.add_argument("--midtrans-merchant-id", help="the merchant id Midtrans gave the tenant")
    parser.add_argument("--email-from", help="the From address of the customers' emails")
    parser.add_argument("--email-reply-to", help="the Reply-To address of the customers' emails")
    parser.add_argument("--max-orders-per-month", type=int, help="override the plan's monthly limit")
    parser.add_argument("--email-language", choices=["id", "en"], help="the customers' emails (default id)")
    parser.add_argument("--smtp-host", help="the SMTP relay the tenant's emails go through")
    parser.add_argument("--smtp-port", type=int, help="default: 587 for starttls, 465 for tls, 25 for none")
    parser.add_argument("--smtp-security", choices=["starttls", "tls", "none"],
                        help="starttls (required upgrade, default), tls (implicit, port 465) or none")
    parser.add_argument("--smtp-credential", metavar="NAME",
                        help="the relay's credential: v2 reads DUALSTACK_SMTP_USERNAME_<NAME> and "
                        "DUALSTACK_SMTP_PASSWORD_<NAME> from its environment file (never given here)")
    parser.add_argument("--finish-url", metavar="TEMPLATE",
                        help="where Snap sends the buyer after paying; placeholders {slug}, {base_domain}, "
                        "{order_id} (default: v2's --finish-url-template, the tenant's thank-you page)")
    parser.add_argument("--cors-origin", action="append", metavar="ORIGIN",
                        help="a site whose pages may call the API from a browser, e.g. https://shop.example "
                        "(repeatable; `set` replaces the list). The tenant's own hosts are always allowed")

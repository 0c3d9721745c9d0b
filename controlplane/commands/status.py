"""`dualstack status`: every tenant, what serves it and what needs attention, in one screen."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from controlplane.arguments import Parser
from controlplane.errors import ExitStatus
from controlplane.state.schema import STATE_SCHEMA


def add_status_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser("status", help="every tenant: declared and effective backend and why they differ, rollout "
                       "phase, soak, last decision, shadow match rate, locks and alerts, what needs attention first; "
                       "exits 3 when a source could not be read (the rest is still shown)")
    p.add_argument("--config", required=True, help="the routing file")
    p.add_argument("--state-database-url", help="locks, rollouts and shadow results "
                   "(default: $DUALSTACK_STATE_DATABASE_URL)")
    p.add_argument("--schema", default=STATE_SCHEMA, help="the state database's schema")
    p.add_argument("--router-admin-url", action="append", metavar="URL",
                   help="a router's admin address, to read what it serves from its /routes (repeat for each)")
    p.add_argument("--prometheus-url", help="firing alerts from its /api/v1/alerts, e.g. http://127.0.0.1:9090")
    p.add_argument("--timeout-s", type=float, default=5.0, help="how long any one source may take")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="as JSON (keys in the README) on standard output")
    out.add_argument("--html", metavar="FILE", help="write a self-contained HTML page to FILE")
    p.set_defaults(func=cmd_status)


def cmd_status(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.status.gather import gather
    from controlplane.status.render import render_html, render_json, render_table
    from controlplane.status.view import build_view

    state_url = ns.state_database_url or os.environ.get("DUALSTACK_STATE_DATABASE_URL")
    gathered = gather(ns.config, state_url, ns.schema, ns.router_admin_url or (), ns.prometheus_url, datetime.now(UTC),
                      timeout_s=ns.timeout_s)
    view = build_view(gathered)
    if ns.json:
        sys.stdout.write(render_json(view))
    elif ns.html:
        Path(ns.html).write_text(render_html(view))
        print(f"{ns.html}: {len(view.tenants)} tenant(s); "
              + ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in view.counts.items() if n))
    else:
        sys.stdout.write(render_table(view))
    if view.complete:
        return ExitStatus.OK
    failed = [f"{s.kind.replace('_', ' ')} {s.where}" for s in view.sources if s.ok is False]
    print(f"dualstack: partial: could not read {', '.join(failed)} (see sources)", file=sys.stderr)
    return ExitStatus.ENVIRONMENT

"""`dualstack reverse-sync --from V1STORE --tenant SLUG [--follow]`: a tenant's v2 orders and status
changes written back into v1's own store (controlplane/reverse/), once or `--follow`ing until
`dualstack cutover complete SLUG` ends it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from controlplane.arguments import Parser
from controlplane.commands.options import flag_or_env, v1_store, v1_store_options
from controlplane.errors import ExitStatus, Interrupted, UsageProblem
from controlplane.state.schema import STATE_SCHEMA


def add_reverse_sync_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    p = sub.add_parser("reverse-sync", help="write a tenant's v2 orders and status changes back into v1's store "
                       "(both generations, v1's spellings, never regressing a row), so the way back loses nothing")
    v1_store_options(p, "to write v2's orders into")
    p.add_argument("--tenant", help="the tenant (required)")
    p.add_argument("--database-url", help="v2's application role (default: $DUALSTACK_DATABASE_URL)")
    p.add_argument("--schema", default="payments", help="v2's schema")
    p.add_argument("--follow", action="store_true", help="pass after pass until `cutover complete` ends it")
    p.add_argument("--interval-s", type=float, default=5.0, help="seconds between passes with --follow")
    p.add_argument("--state-database-url", help="where progress is recorded, for `status` and the way back "
                   "(default: $DUALSTACK_STATE_DATABASE_URL)")
    p.add_argument("--state-schema", default=STATE_SCHEMA, help="the state database's schema")
    p.add_argument("--v1-status-spelling", choices=["lower", "upper"],
                   help="pending/paid or PENDING_PAYMENT/PAID (default: what most of the store's rows use)")
    p.add_argument("--metrics-file", help="write Prometheus gauges here after every pass (a node_exporter "
                   "textfile, *.prom)")
    p.set_defaults(func=cmd_reverse_sync)


def cmd_reverse_sync(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.reverse.follow import Follower, follow
    from controlplane.reverse.v1_stores import writer_for
    from controlplane.state.events import actor
    from controlplane.state.reverse_syncs import ReverseSyncStore

    store = v1_store(ns)
    if store is None:
        raise UsageProblem("missing: pass --from sqlite:PATH or --from postgresql://... (v1's store, written)")
    if not ns.tenant:
        raise UsageProblem("missing: pass --tenant SLUG (the tenant whose v2 orders go back into v1)")
    if not 0.1 <= ns.interval_s <= 3600:
        raise UsageProblem(f"--interval-s {ns.interval_s:g}: between 0.1 and 3600 seconds")
    url = flag_or_env(ns.database_url, "DUALSTACK_DATABASE_URL", "--database-url")
    state_url = ns.state_database_url or os.environ.get("DUALSTACK_STATE_DATABASE_URL")
    follower = Follower(writer_for(store, ns.v1_status_spelling), url, ns.tenant, ns.schema,
                        state=ReverseSyncStore(state_url, ns.state_schema) if state_url else None,
                        metrics_path=Path(ns.metrics_file) if ns.metrics_file else None)
    if not follower.begin(actor(), print):
        return ExitStatus.OK
    try:
        if ns.follow:
            follow(follower, ns.interval_s, lambda line: print(line, flush=True))
            return ExitStatus.OK
        outcome = follower.once()
    except KeyboardInterrupt:
        raise Interrupted("each batch is its own short transaction in v1's store: what was written stays, the "
                          "next pass goes on from the last recorded one") from None
    if outcome.error is not None:
        raise outcome.error
    if outcome.report is not None:
        print(f"reverse pass: {outcome.report.line()}")
        for line in outcome.report.written.left_alone_lines():
            print(line)
    return ExitStatus.OK

"""`dualstack reconcile --tenant SLUG`: settle orders whose notification was lost (controlplane/reconcile/)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from controlplane.arguments import Parser
from controlplane.commands.options import duration_s, flag_or_env, rate_per_s
from controlplane.errors import EnvironmentProblem, ExitStatus, Interrupted, UsageProblem

if TYPE_CHECKING:
    from controlplane.reconcile import ReconcileReport


def add_reconcile_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """`dualstack reconcile`'s options (the command owns them; cli.py adds it to the others)."""
    p = sub.add_parser("reconcile", help="settle orders whose Midtrans notification was lost or unconfirmed: "
                       "v2 asks Get Status and applies it by its own rules (v1 is only reported)")
    p.add_argument("--tenant", required=True, help="the tenant's slug")
    p.add_argument("--v2-url", help="v2's address (default: $DUALSTACK_V2_URL)")
    p.add_argument("--admin-token-env", default="DUALSTACK_V2_ADMIN_TOKEN", metavar="VAR",
                   help="the environment variable holding the tenant's admin token")
    p.add_argument("--older-than", default="15m", help="orders pending longer than this (s, m, h, d)")
    p.add_argument("--within", default="7d", help="orders created within this long")
    p.add_argument("--rate", default="5/s", help="at most this many orders checked with Midtrans (5/s, 120/m)")
    p.add_argument("--limit", type=int, default=1000, help="at most this many orders a run (oldest first)")
    p.add_argument("--sqlite", help="v1's orders.db (read-only): also report v1's pending orders Midtrans "
                   "settled otherwise")
    p.add_argument("--metrics-file", help="write Prometheus gauges here (a node_exporter textfile, *.prom)")
    p.set_defaults(func=cmd_reconcile)


def cmd_reconcile(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.progress import ProgressDisplay
    from controlplane.reconcile import V2Admin, V2Problem, reconcile

    token = os.environ.get(ns.admin_token_env)
    if not token:
        raise UsageProblem(f"set {ns.admin_token_env} to the tenant's admin token (`dualstack tenant rotate-token "
                           f"{ns.tenant}` makes a new one); it is never taken from the command line")
    client = V2Admin(flag_or_env(ns.v2_url, "DUALSTACK_V2_URL", "--v2-url"), ns.tenant, token)
    older_than_s = duration_s(ns.older_than, "--older-than")
    progress = ProgressDisplay(sys.stderr, unit="orders")
    try:
        report = reconcile(client, older_than_s=older_than_s, within_s=duration_s(ns.within, "--within"),
                           limit=ns.limit, rate_per_s=rate_per_s(ns.rate, "--rate"), progress=progress,
                           v1_sqlite=Path(ns.sqlite) if ns.sqlite else None)
    except V2Problem as exc:
        progress.close(interrupted=True)
        _write_metrics(ns, None)
        raise EnvironmentProblem(str(exc)) from None
    except KeyboardInterrupt:
        progress.close(interrupted=True)
        raise Interrupted("orders settled so far are settled (each on its own); the rest wait for the next run") \
            from None
    progress.close()
    _write_metrics(ns, report)
    results = ", ".join(f"{n} {result}" for result, n in sorted(report.results.items())) or "nothing to do"
    print(f"tenant {ns.tenant}: {report.pending_past_threshold} orders pending on v2 for over {ns.older_than}; "
          f"{report.candidates} checked with Midtrans in {report.seconds:.1f}s: {results}")
    for line in report.lines:
        print(f"  {line}")
    if ns.sqlite:
        print(f"v1: {report.v1_checked} pending orders checked, {len(report.v1_lines)} that Midtrans settled "
              "otherwise (reported only)")
        for line in report.v1_lines:
            print(f"  {line}")
    print(f"stuck: {report.stuck} order(s) not settled" + (" (they are tried again next run)" if report.stuck else ""))
    return ExitStatus.OK if report.stuck == 0 else ExitStatus.INVALID


def _write_metrics(ns: argparse.Namespace, report: ReconcileReport | None) -> None:
    from controlplane.reconcile.metrics import write_metrics

    if not ns.metrics_file:
        return
    try:
        write_metrics(Path(ns.metrics_file), ns.tenant, report)
    except OSError as exc:  # the run's own outcome stands; the missing gauges show as a stale timestamp
        print(f"dualstack: cannot write {ns.metrics_file}: {exc.strerror}", file=sys.stderr)

"""`dualstack migrate --from STORE --tenant SLUG`: v1's orders into v2 (controlplane/migrate/), once or
`--follow`ing. `dualstack migrate sqlite --sqlite PATH` is the older spelling of `--from sqlite:PATH`."""

from __future__ import annotations

import argparse
import sys
import time

from controlplane.arguments import Parser
from controlplane.commands.options import core_url_options, flag_or_env, rate_per_s, v1_store, v1_store_options
from controlplane.errors import ExitStatus, Interrupted, UsageProblem


def add_migrate_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    """`dualstack migrate`'s options (the command owns them; parser.py adds it to the others)."""
    p = sub.add_parser("migrate", help="move a tenant's v1 orders into v2 (read-only on v1, idempotent, verified)")
    v1_store_options(p, "to migrate from")
    _options(p)
    mig_sub = p.add_subparsers(dest="migrate_command", metavar="[sqlite]")
    old = mig_sub.add_parser("sqlite", help="the older spelling of `dualstack migrate --from sqlite:PATH`")
    old.add_argument("--sqlite", required=True, help="v1's orders.db (opened read-only)")
    old.set_defaults(v1_from=None)
    _options(old)


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", help="the v2 tenant these orders belong to (required)")
    p.add_argument("--database-url", help="v2's application role (default: $DUALSTACK_DATABASE_URL)")
    p.add_argument("--schema", default="payments", help="v2's schema")
    p.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")
    p.add_argument("--follow", action="store_true", help="keep syncing new and changed v1 rows until stopped")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between syncs with --follow")
    p.add_argument("--status-rate", default="20/s", help="at most this many Get Status calls, which confirm "
                   "v1's paid (failed, refunded) orders before v2 takes them")
    core_url_options(p)
    p.set_defaults(func=cmd_migrate)


def cmd_migrate(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.evidence import EvidenceCheck
    from controlplane.midtrans_status import MidtransStatus
    from controlplane.migrate import detail_lines, migrate
    from controlplane.progress import ProgressDisplay

    store = v1_store(ns)
    if store is None:
        raise UsageProblem("missing: pass --from sqlite:PATH or --from postgresql://... (v1's store)")
    if not ns.tenant:
        raise UsageProblem("missing: pass --tenant SLUG (the v2 tenant these orders belong to)")
    url = flag_or_env(ns.database_url, "DUALSTACK_DATABASE_URL", "--database-url")
    # One for every pass: a claim Midtrans refuted is not asked about again a few seconds later.
    evidence = EvidenceCheck(MidtransStatus.from_environment(overrides={
        "sandbox": ns.core_url_sandbox, "production": ns.core_url_production}),
        rate_per_s=rate_per_s(ns.status_rate, "--status-rate"))
    first = True
    while True:
        # Progress for the first pass (the long one); --follow's later passes are one line each.
        progress = ProgressDisplay(sys.stderr) if first else None
        try:
            report = migrate(store, url, ns.tenant, ns.schema, dry_run=ns.dry_run, progress=progress,
                             evidence=evidence)
        except KeyboardInterrupt:
            if progress is not None:
                progress.close(interrupted=True)
            # Each pass is one transaction: the interrupted one was rolled back as a whole.
            earlier = "earlier passes are committed; " if not first else ""
            raise Interrupted(f"{earlier}the interrupted pass was rolled back, nothing of it was written") from None
        if progress is not None:
            progress.close()
        if first and report.read == 0:
            print(f"warning: {store.name} has 0 orders: is this the store v1 writes? (v1's PostgreSQL "
                  "generation leaves an empty orders.db next to it)", file=sys.stderr)
        first = False
        rate = report.read / report.seconds if report.seconds else 0.0
        print(f"{'dry run: ' if ns.dry_run else ''}{report.read} v1 rows read in {report.seconds:.1f}s "
              f"({rate:,.0f}/s): {report.inserted} inserted, {report.updated} updated, {report.unchanged} unchanged "
              f"({report.kept_newer} newer on v2, kept), {len(report.bad)} bad, {len(report.differences)} different",
              flush=True)
        if report.confirmed or report.unconfirmed:
            print(f"  v1 statuses that move money: {report.confirmed} confirmed by Midtrans, "
                  f"{len(report.unconfirmed)} without evidence")
        for line in detail_lines(report):
            print(line)
        if not ns.follow:
            good = report.clean and not report.bad and not report.unconfirmed
            return ExitStatus.OK if good else ExitStatus.INVALID
        time.sleep(ns.interval)

"""`dualstack cutover SLUG --to v2|v1`: the guarded move of one tenant (controlplane/cutover/);
`dualstack cutover status SLUG`: the journal of its latest cutover; `dualstack cutover complete SLUG`:
the end of its reverse sync (controlplane/reverse/)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from controlplane.commands.options import database_layout, flag_or_env, v1_store
from controlplane.errors import ExitStatus, UsageProblem


def cmd_cutover(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.cutover import Cutover, CutoverRequest
    from controlplane.state.events import actor

    if ns.slug == "status" and ns.status_of is not None:
        return cmd_cutover_status(ns)
    if ns.slug == "complete" and ns.status_of is not None:
        return cmd_cutover_complete(ns)
    if ns.status_of is not None:
        raise UsageProblem(f"one tenant at a time: `cutover SLUG --to v1|v2`, `cutover status SLUG` or `cutover "
                           f"complete SLUG` (got '{ns.slug} {ns.status_of}')")
    if ns.to is None or ns.config is None:
        raise UsageProblem("a cutover needs --to v1|v2 and --config (the routing file)")
    request = CutoverRequest(
        config_path=Path(ns.config), slug=ns.slug, to=ns.to,
        admin_url=ns.admin_url or os.environ.get("DUALSTACK_ADMIN_URL"),
        database_url=ns.database_url or os.environ.get("DUALSTACK_DATABASE_URL"),
        v1=v1_store(ns),
        state_url=ns.state_database_url or os.environ.get("DUALSTACK_STATE_DATABASE_URL"),
        layout=database_layout(ns),
        state_schema=ns.state_schema, router_admin_urls=ns.router_admin_url or (), overrides=ns.override or (),
        reason=ns.reason, skip_nginx=ns.no_nginx, actor=actor())
    cutover = Cutover(request)
    if ns.preflight_only:
        print(f"preflight of {ns.slug} -> {ns.to} (nothing will change):")
        checks = cutover.preflight()
        return ExitStatus.OK if all(c.passes for c in checks) else ExitStatus.INVALID
    return ExitStatus.OK if cutover.run() else ExitStatus.INVALID


def cmd_cutover_complete(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.reverse.cutover import complete
    from controlplane.state.events import actor

    state_url = flag_or_env(ns.state_database_url, "DUALSTACK_STATE_DATABASE_URL", "--state-database-url")
    print(complete(state_url, ns.state_schema, ns.status_of, actor()))
    return ExitStatus.OK


def cmd_cutover_status(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.cutover.status import status_json, status_lines
    from controlplane.state.cutovers import CutoverStore

    slug = ns.status_of
    state_url = flag_or_env(ns.state_database_url, "DUALSTACK_STATE_DATABASE_URL", "--state-database-url")
    store = CutoverStore(state_url, ns.state_schema)
    record = store.latest(slug)
    if record is None:
        if ns.json:
            print(json.dumps(None))
        else:
            print(f"no cutover of {slug} is recorded in the state database")
        return ExitStatus.INVALID
    entries = store.entries(record.id)
    if ns.json:
        print(json.dumps(status_json(record, entries), indent=2))
    else:
        print("\n".join(status_lines(record, entries)))
    return ExitStatus.OK

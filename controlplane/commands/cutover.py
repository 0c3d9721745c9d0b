"""`dualstack cutover SLUG --to v2|v1`: the guarded move of one tenant (controlplane/cutover.py)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from controlplane.db.layout import DatabaseLayout
from controlplane.errors import ExitStatus


def cmd_cutover(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.cutover import Cutover, CutoverRequest
    from controlplane.rollout.locks import actor

    request = CutoverRequest(
        config_path=Path(ns.config), slug=ns.slug, to=ns.to,
        admin_url=ns.admin_url or os.environ.get("DUALSTACK_ADMIN_URL"),
        database_url=ns.database_url or os.environ.get("DUALSTACK_DATABASE_URL"),
        sqlite=Path(ns.sqlite) if ns.sqlite else None,
        state_url=ns.state_database_url or os.environ.get("DUALSTACK_STATE_DATABASE_URL"),
        layout=DatabaseLayout(schema=ns.schema, owner_role=ns.owner_role, app_role=ns.app_role),
        state_schema=ns.state_schema, router_admin_urls=ns.router_admin_url or (), overrides=ns.override or (),
        reason=ns.reason, skip_nginx=ns.no_nginx, actor=actor())
    cutover = Cutover(request)
    if ns.preflight_only:
        print(f"preflight of {ns.slug} -> {ns.to} (nothing will change):")
        checks = cutover.preflight()
        return ExitStatus.OK if all(c.passes for c in checks) else ExitStatus.INVALID
    return ExitStatus.OK if cutover.run() else ExitStatus.INVALID

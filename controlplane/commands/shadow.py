"""`dualstack shadow report`: what shadow comparisons showed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg

from controlplane.commands.options import (
    state_url,
)
from controlplane.errors import ExitStatus


def cmd_shadow_report(ns: argparse.Namespace) -> ExitStatus:
    from datetime import UTC, datetime

    from controlplane.shadow.report import RENDERERS, load, parse_since

    url = state_url(ns)
    until = datetime.now(UTC)
    since = parse_since(ns.since, until)
    with psycopg.connect(url) as conn:
        data = load(conn, ns.schema, ns.tenant, since, until)
    output = RENDERERS[ns.format](data)
    if ns.out == "-":
        sys.stdout.write(output)
    else:
        Path(ns.out).write_text(output)
        print(f"{ns.out}: {data.comparisons} comparisons for {ns.tenant}, match rate {data.match_rate * 100:.1f}% "
              f"({len(data.endpoints)} endpoint(s), {len(data.fields)} differing field(s))")
    return ExitStatus.OK

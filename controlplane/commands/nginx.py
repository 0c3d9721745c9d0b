"""`dualstack nginx render|check|apply`: generated nginx includes."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from controlplane.config import load_config
from controlplane.errors import ExitStatus


def cmd_nginx(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.render.apply import apply, check
    from controlplane.render.nginx import render

    config = load_config(ns.config)
    if ns.nginx_command == "render":
        out = Path(ns.out).absolute()
        rendering = render(config, out)
        if ns.diff:
            changes = rendering.diff(out)
            print(changes or f"{out}: no changes (version {rendering.version})", end="" if changes else "\n")
            return ExitStatus.OK
        rendering.write(out)
        print(f"wrote {len(rendering.files)} files to {out} (version {rendering.version})")
    elif ns.nginx_command == "check":
        rendering = check(config)
        print(f"nginx -t: OK ({len(rendering.files)} files, {len(config.tenants)} tenant(s))")
    else:
        report = apply(config, Path(ns.dir), reload_command=shlex.split(ns.reload_command),
                       main_config=Path(ns.nginx_conf) if ns.nginx_conf else None, verify_url=ns.verify_url)
        for step in report.steps:
            print(f"  {step}")
        print(f"nginx is serving version {report.version}" + ("" if report.changed else " (unchanged)"))
    return ExitStatus.OK

"""`dualstack nginx render|check|apply`: generated nginx includes."""

from __future__ import annotations

import argparse
import shlex
from collections import Counter
from pathlib import Path

from controlplane.config import RoutingConfig, load_config
from controlplane.config.model import SITE_MODES
from controlplane.errors import EnvironmentProblem, ExitStatus, UsageProblem


def _sites(config: RoutingConfig) -> str:
    """`sites: 1 snippet, 1 static`: how many hosts keep ops' own server block, at a glance."""
    modes = Counter(config.site_of(slug).mode for slug in config.tenants)
    return "sites: " + (", ".join(f"{modes[m]} {m}" for m in SITE_MODES if modes[m]) or "none")


def cmd_nginx(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.render.apply import apply
    from controlplane.render.nginx import render
    from controlplane.render.nginx_check import check

    config = load_config(ns.config)
    if ns.nginx_command == "render":
        out = Path(ns.out).absolute()
        rendering = render(config, out)
        if ns.diff:
            changes = rendering.diff(out)
            print(changes or f"{out}: no changes (version {rendering.version})", end="" if changes else "\n")
            return ExitStatus.OK
        rendering.write(out)
        print(f"wrote {len(rendering.files)} files to {out} (version {rendering.version}; {_sites(config)})")
    elif ns.nginx_command == "check":
        if ns.nginx_conf and not ns.dir:
            raise UsageProblem("--nginx-conf needs --dir: the directory it includes, where the candidate is put")
        checked = check(config, directory=Path(ns.dir) if ns.dir else None,
                        main_config=Path(ns.nginx_conf) if ns.nginx_conf else None)
        print(f"nginx -t: OK on {'; on '.join(checked.tested)} ({len(checked.rendering.files)} files, "
              f"{len(config.tenants)} tenant(s); {_sites(config)})")
    else:
        reload_command = shlex.split(ns.reload_command) if ns.reload_command else None
        try:
            report = apply(config, Path(ns.dir), reload_command=reload_command,
                           main_config=Path(ns.nginx_conf) if ns.nginx_conf else None, verify_url=ns.verify_url)
        except OSError as exc:  # after the swap apply restores and says so: this came before, nothing changed
            raise EnvironmentProblem(
                f"nginx apply: {exc.strerror or type(exc).__name__}: {exc.filename or ns.dir}; nothing was changed. "
                f"apply writes {ns.dir}, the folders beside it and signals nginx: run it as their owner (root, "
                "as a rule)") from None
        for step in report.steps:
            print(f"  {step}")
        print(f"nginx is serving version {report.version}" + ("" if report.changed else " (unchanged)")
              + f" ({_sites(config)})")
    return ExitStatus.OK

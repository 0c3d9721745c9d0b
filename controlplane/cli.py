"""`dualstack`: the operator's command line. A thin shell: parse, call an operation, map the outcome
to an exit code in one place (`run`).

Data-plane processes (the router) are started as their own program (`python -m proxy`), so the
control plane never imports the data plane.
"""

from __future__ import annotations

import argparse
import enum
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from controlplane.config import ConfigError, load_config
from controlplane.errors import EnvironmentProblem


class ExitStatus(enum.IntEnum):
    OK = 0
    INVALID = 1  # the input (a config file, a check) is wrong; the message says where
    USAGE = 2  # argparse's own code for bad arguments
    ENVIRONMENT = 3  # something outside the input failed: a port in use, a missing binary


def cmd_validate(ns: argparse.Namespace) -> ExitStatus:
    config = load_config(ns.file)
    print(f"{ns.file}: OK: {config.summary()}")
    return ExitStatus.OK


def exec_router(args: Sequence[str]) -> NoReturn:
    """Replace this process with the router, so signals and exit codes are the router's own."""
    env = dict(os.environ, DUALSTACK_PROG="dualstack serve")
    argv = [sys.executable, "-m", "proxy", *args]
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)


def cmd_demo(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.demo import run_demo

    return ExitStatus(run_demo(state_dir=ns.state_dir, router_port=ns.port, workers=ns.workers))


Command = Callable[[argparse.Namespace], ExitStatus]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dualstack",
        description="Move tenants from v1 to v2 one at a time, safely. "
        "Routing is declared in a YAML file (see configs/routing.example.yaml).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check a routing file; print every issue as file:line: path: message")
    p.add_argument("file")
    p.set_defaults(func=cmd_validate)

    # `serve` is dispatched in run() before parsing: its options belong to the router's own parser.
    sub.add_parser("serve", help="run the router (see `dualstack serve --help`)", add_help=False)

    p = sub.add_parser("demo", help="run the whole stack locally on embedded defaults")
    p.add_argument("--state-dir", default=".dualstack-demo", help="where the demo keeps its files")
    p.add_argument("--port", type=int, default=8080, help="the router's port (admin: port + 1020)")
    p.add_argument("--workers", type=int, default=2)
    p.set_defaults(func=cmd_demo)
    return parser


def run(argv: Sequence[str] | None = None) -> ExitStatus:
    """Parse and dispatch; the one place where outcomes become exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"]:
        return exec_router(args[1:])
    ns = build_parser().parse_args(args)
    func: Command = ns.func
    try:
        return func(ns)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{len(exc.issues)} issue(s) found", file=sys.stderr)
        return ExitStatus.INVALID
    except EnvironmentProblem as exc:
        print(f"dualstack: {exc}", file=sys.stderr)
        return ExitStatus.ENVIRONMENT
    except KeyboardInterrupt:
        return ExitStatus.OK


def main(argv: Sequence[str] | None = None) -> int:
    return int(run(argv))

"""`dualstack`: the operator's command line. A thin shell: parse (controlplane/commands/parser.py),
call an operation, map the outcome to an exit code in one place (`run`).

Data-plane processes (the router) are started as their own program (`python -m proxy.router`), so the
control plane never imports the data plane.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

import psycopg
from psycopg.conninfo import conninfo_to_dict

from controlplane.commands.parser import build_parser
from controlplane.config import ConfigError
from controlplane.cutover import CutoverStopped
from controlplane.db.migrate import MigrationError
from controlplane.db.outbox import OutboxError
from controlplane.db.tenants import TenantError
from controlplane.errors import EnvironmentProblem, ExitStatus, Interrupted, UsageProblem, first_line
from controlplane.migrate import MigrationProblem
from controlplane.render.nginx import RenderError
from controlplane.render.nginx_check import NginxFailure
from controlplane.state.locks import RollbackRefused
from controlplane.state.schema import STATE_SCHEMA

__all__ = ["ExitStatus", "main", "run"]


PROGRAMS: dict[tuple[str, ...], tuple[str, str]] = {
    ("serve",): ("proxy.router", "dualstack serve"),
    ("v2", "serve"): ("proxy.v2", "dualstack v2 serve"),
    ("fake-midtrans",): ("standins.midtrans", "dualstack fake-midtrans"),
    ("legacy-v1",): ("standins.legacy_v1", "dualstack legacy-v1"),
}


def exec_program(module: str, prog: str, args: Sequence[str]) -> NoReturn:
    """Replace this process with `python -m module`, so signals and exit codes are its own."""
    env = dict(os.environ, DUALSTACK_PROG=prog)
    argv = [sys.executable, "-m", module, *args]
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)


Command = Callable[[argparse.Namespace], ExitStatus]


def run(argv: Sequence[str] | None = None) -> ExitStatus:
    """Parse and dispatch; the one place where outcomes become exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    for prefix, (module, prog) in PROGRAMS.items():
        if tuple(args[: len(prefix)]) == prefix:
            exec_program(module, prog, args[len(prefix):])
    ns = build_parser().parse_args(args)
    func: Command = ns.func
    try:
        status = _run_command(func, ns)
        sys.stdout.flush()  # a reader that went away shows here, not as a traceback at exit
        return status
    except BrokenPipeError:
        # The reader went away (`| head`): say nothing more, and let no later flush raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitStatus.BROKEN_PIPE
    except Interrupted as exc:
        print(f"\ndualstack: interrupted: {exc}", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except KeyboardInterrupt:
        print("\ndualstack: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED


def _run_command(func: Command, ns: argparse.Namespace) -> ExitStatus:
    try:
        return func(ns)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        print(f"{len(exc.issues)} issue(s) found", file=sys.stderr)
        return ExitStatus.INVALID
    except (EnvironmentProblem, psycopg.OperationalError) as exc:
        print(f"dualstack: {first_line(exc)}", file=sys.stderr)
        return ExitStatus.ENVIRONMENT
    except psycopg.Error as exc:
        print(f"dualstack: {_database_problem(exc, ns)}", file=sys.stderr)
        return ExitStatus.ENVIRONMENT
    except (UsageProblem, ValueError) as exc:
        print(f"dualstack: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    except RollbackRefused as exc:
        print(f"dualstack: {exc}", file=sys.stderr)
        return ExitStatus.INVALID
    except CutoverStopped as exc:
        print(f"dualstack: cutover stopped: {exc}", file=sys.stderr)
        return ExitStatus.INVALID
    except (TenantError, OutboxError, MigrationError, NginxFailure, RenderError, MigrationProblem) as exc:
        print(f"dualstack: {exc}", file=sys.stderr)
        return ExitStatus.INVALID


_MISSING_SCHEMA = (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName,
                   psycopg.errors.UndefinedFunction)


def _database_problem(exc: psycopg.Error, ns: argparse.Namespace) -> str:
    """One line: what the database said, which database, and the command that fixes it."""
    what = exc.diag.message_primary or first_line(exc)
    state = STATE_SCHEMA in what or (getattr(ns, "state_database_url", None) is not None
                                     and getattr(ns, "database_url", None) is None
                                     and getattr(ns, "admin_url", None) is None)
    target = "state" if state else "payments"
    database = _database_name(ns, state)
    missing = isinstance(exc, _MISSING_SCHEMA) or (
        isinstance(exc, psycopg.errors.InvalidParameterValue) and "role" in what and "does not exist" in what)
    if missing:
        schema = STATE_SCHEMA if state else "the payments schema"
        return (f"{what}: {schema} is missing or incomplete in database {database}: "
                f"run `dualstack db migrate --target {target}` against it")
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return (f"{what} (database {database}): connect as the role `dualstack db migrate` granted this to, "
                f"or re-run `dualstack db migrate --target {target}` to restore its grants")
    return f"database {database}: {what}"


def _database_name(ns: argparse.Namespace, state: bool) -> str:
    names = (("state_database_url", "DUALSTACK_STATE_DATABASE_URL"),) if state else (
        ("database_url", "DUALSTACK_DATABASE_URL"), ("admin_url", "DUALSTACK_ADMIN_URL"))
    for attribute, variable in names:
        url = getattr(ns, attribute, None) or os.environ.get(variable)
        if url:
            try:
                return str(conninfo_to_dict(url).get("dbname") or "?")
            except psycopg.ProgrammingError:
                return "?"
    return "?"


def main(argv: Sequence[str] | None = None) -> int:
    return int(run(argv))

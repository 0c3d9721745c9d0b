"""Errors that commands raise, and the exit statuses the CLI maps them to (config errors live with
the config)."""

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    INVALID = 1  # the input (a config file, a check) is wrong; the message says where
    USAGE = 2  # argparse's own code for bad arguments
    ENVIRONMENT = 3  # something outside the input failed: a port in use, a missing binary
    INCONCLUSIVE = 4  # a judgement could not be reached (a replayed rollout that only held)
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT): the message says what state things were left in
    BROKEN_PIPE = 141  # the reader of standard output went away (128 + SIGPIPE), e.g. `| head`


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (psycopg's carry a DETAIL/HINT below it), or its
    type's name when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class EnvironmentProblem(Exception):
    """Something outside the user's input stops the command; the message says what to do."""


class UsageProblem(Exception):
    """The command was called without something it needs; the message says what to pass."""


class Interrupted(Exception):
    """Ctrl-C stopped a command; the message says what state it left things in."""

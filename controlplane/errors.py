"""Errors that commands raise, and the exit statuses the CLI maps them to (config errors live with
the config)."""

import enum


class ExitStatus(enum.IntEnum):
    OK = 0
    INVALID = 1  # the input (a config file, a check) is wrong; the message says where
    USAGE = 2  # argparse's own code for bad arguments
    ENVIRONMENT = 3  # something outside the input failed: a port in use, a missing binary


class EnvironmentProblem(Exception):
    """Something outside the user's input stops the command; the message says what to do."""


class UsageProblem(Exception):
    """The command was called without something it needs; the message says what to pass."""

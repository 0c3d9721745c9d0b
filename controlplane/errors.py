"""Errors that commands raise for the CLI to map to exit codes (config errors live with the config)."""


class EnvironmentProblem(Exception):
    """Something outside the user's input stops the command; the message says what to do."""


class UsageProblem(Exception):
    """The command was called without something it needs; the message says what to pass."""

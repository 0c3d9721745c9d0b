"""The command-line conventions every program of the project shares (`dualstack`, and the router's and
v2's own `serve` parsers): each option's default shown in --help beside its description, and an
unknown option reported first, with the option it probably meant, before anything else argparse
would say ("required: --config" for `serve --conifg x`). Pure argparse: the data plane uses it too."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from typing import Any


class DefaultsShown(argparse.HelpFormatter):
    """Appends an option's default to its description, unless there is none or the text names it
    (a default read from the environment is named as $VARIABLE there, never shown: it may be secret)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if default in (None, False, argparse.SUPPRESS) or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser (and, through add_subparsers, every subcommand's) that checks for unknown
    long options before parsing, so a misspelling is what the user hears about first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsShown)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        self._refuse_unknown_options(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def _refuse_unknown_options(self, args: Sequence[str]) -> None:
        subcommands = {name for action in self._actions if isinstance(action, argparse._SubParsersAction)
                       for name in action.choices}
        known = [option for option in self._option_string_actions if option.startswith("--")]
        for token in args:
            if token == "--" or token in subcommands:
                return  # what follows is positional, or the subcommand's own to check
            if not token.startswith("--"):
                continue
            name = token.split("=", 1)[0]
            if any(option.startswith(name) for option in known):
                continue  # the option itself, or an abbreviation argparse accepts
            guess = difflib.get_close_matches(name, known, n=1)
            self.error(f"unknown option {name}" + (f"; did you mean {guess[0]}?" if guess else ""))


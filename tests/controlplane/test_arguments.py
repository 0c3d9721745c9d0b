"""The command-line conventions of every program: described options with their defaults shown, and a
misspelt option reported first, with what it probably meant."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator

import pytest

from controlplane.commands.parser import build_parser
from proxy.router.server import parse_args as router_args
from proxy.v2.server import parse_args as v2_args


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if child.add_help:  # the exec'd programs (serve, v2) describe their options themselves
                    yield from _parsers(child)


def _server_parser(parse: Callable[[list[str]], object], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        parse(["--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_every_option_has_a_description_and_shows_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    undescribed = [f"{p.prog} {a.option_strings[-1]}" for p in _parsers(build_parser()) for a in p._actions
                   if a.option_strings and not a.help]
    assert undescribed == []
    limit = build_parser()._subparsers._group_actions[0].choices["rollout"]  # type: ignore[union-attr]
    explain = limit._subparsers._group_actions[0].choices["explain"]  # type: ignore[union-attr]
    assert "(default: 20)" in " ".join(explain.format_help().split())
    router = _server_parser(lambda argv: router_args(argv, "dualstack serve"), capsys)
    assert "(default: 127.0.0.1:9100)" in router
    v2 = _server_parser(lambda argv: v2_args(argv, "dualstack v2 serve"), capsys)
    assert "(default: payments)" in v2 and "(default: 10)" in v2


@pytest.mark.parametrize(("parse", "argv", "meant"), [
    (build_parser().parse_args, ["rollout", "explain", "shop", "--limt", "3"], "--limit"),
    (build_parser().parse_args, ["--verison"], "--version"),
    (lambda argv: router_args(argv, "dualstack serve"), ["--conifg", "x"], "--config"),
    (lambda argv: v2_args(argv, "dualstack v2 serve"), ["--databse-url", "x"], "--database-url"),
])
def test_a_misspelt_option_is_reported_first_with_a_suggestion(
        parse: Callable[[list[str]], object], argv: list[str], meant: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    wrong = next(a for a in argv if a.startswith("--"))
    assert err.rstrip().endswith(f"error: unknown option {wrong}; did you mean {meant}?"), err
    assert "required" not in err

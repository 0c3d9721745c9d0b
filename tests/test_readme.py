"""The README's `dualstack ...` commands name real subcommands and options, and the README says once
how to get `dualstack` on PATH."""

from __future__ import annotations

import argparse
import re
import shlex

from controlplane.commands.parser import build_parser
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def _commands() -> list[list[str]]:
    """Every `dualstack ...` line of the README's shell blocks, and every inline `dualstack ...`."""
    lines = [line for block in re.findall(r"```sh\n(.*?)```", README, re.S) for line in block.splitlines()]
    lines += re.findall(r"`((?:sudo )?dualstack [^`]+)`", README)
    found = []
    for line in lines:
        words = shlex.split(line.split(" # ")[0].replace("\\", ""), comments=False)
        if words[:1] == ["sudo"]:
            words = words[1:]
        if words[:1] == ["dualstack"] and len(words) > 1 and words[1] != "...":  # "...": prose about them all
            found.append(words[1:])
    return found


def _children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return {name: child for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for name, child in action.choices.items()}


def test_every_readme_command_names_a_real_subcommand_and_real_options() -> None:
    commands = _commands()
    assert len(commands) > 40
    wrong = []
    for words in commands:
        parser, path = build_parser(), ["dualstack"]
        for word in words:
            children = _children(parser)
            word = word.split("/")[0]  # `tenant add/set --finish-url`: either
            if not children or word not in children:
                break
            parser, path = children[word], [*path, word]
        if _children(parser) and parser.add_help:
            wrong.append(f"{' '.join(words)}: no subcommand after {' '.join(path)}")
            continue
        known = {option for action in parser._actions for option in action.option_strings}
        if parser.add_help:  # the exec'd programs (serve, v2 serve) check their own options
            wrong += [f"{' '.join(words)}: {' '.join(path)} has no {word}" for word in words
                      if word.startswith("--") and word.split("=")[0].strip("[]") not in known
                      and not word.startswith("--from")]
    assert wrong == []


def test_the_readme_says_how_to_get_dualstack_on_path() -> None:
    top = README[:README.index("## What runs where")]
    assert ". .venv/bin/activate" in top and ".venv/bin/dualstack" in top

"""`dualstack completion bash|zsh`: generated from the parser, run in a real bash."""

from __future__ import annotations

import shlex
import shutil
import subprocess

import pytest

from controlplane.cli import ExitStatus, run
from controlplane.commands.completion import commands
from controlplane.commands.parser import build_parser


def _script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert run(["completion", shell]) == ExitStatus.OK
    return capsys.readouterr().out


def test_the_bash_script_names_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    script = _script("bash", capsys)
    paths = [path for path, _ in commands(build_parser(), "dualstack")]
    assert len(paths) > 40 and "dualstack rollout explain" in paths and "dualstack completion" in paths
    missing = [path for path in paths if f"[{shlex.quote(path)}]=" not in script]
    assert missing == []
    zsh = _script("zsh", capsys)
    assert zsh.startswith("#compdef dualstack\n") and "bashcompinit" in zsh and zsh.endswith(script)


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completes_subcommands_options_and_choices(capsys: pytest.CaptureFixture[str]) -> None:
    script = _script("bash", capsys)
    probe = script + """
complete_line() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _dualstack
                  echo "${COMPREPLY[*]}"; }
complete_line dualstack rol
complete_line dualstack rollout ex
complete_line dualstack rollout explain shop --li
complete_line dualstack cutover shop --to ''
complete_line dualstack completion ''
"""
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == ["rollout", "explain", "--limit", "v1 v2", "bash zsh --help"], result.stderr

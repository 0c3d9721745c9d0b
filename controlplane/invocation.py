"""How a printed `dualstack ...` command starts the CLI: the command installed beside this interpreter
(in .venv/bin for the README's set-up), which works without activating anything. The demo, the
cutover's next steps and `rollout explain` print commands with it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def command_path() -> str:
    installed = Path(sys.executable).parent / "dualstack"
    if installed.exists():
        return shlex.quote(str(installed))
    return f"{shlex.quote(sys.executable)} -m controlplane"

"""The README's main command, run as a newcomer would: start the demo, paste the printed commands,
stop it with Ctrl-C, and run it again in the same folder."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from controlplane.demo import KEYS

pytestmark = pytest.mark.timeout(240)

END_OF_GUIDE = "Orders created on either side"


def six_free_ports() -> int:
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = int(sock.getsockname()[1])
        if base > 65530:
            continue
        ok = True
        for port in range(base, base + 6):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise AssertionError("no six free ports in a row")


def start_demo(state_dir: Path, base: int, database_url: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "controlplane", "demo", "--port-base", str(base), "--state-dir", str(state_dir),
         "--workers", "1", "--database-url", database_url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith(END_OF_GUIDE):
            return process, "".join(lines)
    process.kill()
    raise AssertionError("the demo did not print its guide:\n" + "".join(lines))


def printed_commands(guide: str) -> list[str]:
    """Every command line the guide prints for pasting, with its continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", guide)
    return [line.strip() for line in joined.splitlines() if line.startswith(("  curl ", "  /", "  export "))]


def _cmdline(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # the process ended meanwhile
        return b""


def run_printed(command: str, env_lines: list[str]) -> str:
    result = subprocess.run(["bash", "-c", "\n".join([*env_lines, command])], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, (command, result.stdout, result.stderr)
    return result.stdout


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0


def test_the_demo_runs_its_printed_commands_twice(tmp_path: Path, empty_database: str) -> None:
    state_dir = tmp_path / "demo"
    base = six_free_ports()
    for run in (1, 2):
        process, guide = start_demo(state_dir, base, empty_database)
        try:
            commands = printed_commands(guide)
            curls = [c for c in commands if c.startswith("curl ")]
            assert len(curls) == 7, curls
            outputs = [run_printed(c, []) for c in curls]
            created, notified, status, stats, v1_created, v1_notified, v1_status = outputs
            assert '"paymentUrl"' in created and '"status": 200' in notified, (run, created, notified)
            assert '"status": "PAID"' in status, (run, status)
            assert '"success": true' in stats, (run, stats)
            assert '"paymentUrl"' in v1_created and '"status": 200' in v1_notified, (run, v1_created)
            # v1's own answer (its PostgreSQL generation): paid, spelled as v1 spells it.
            assert '"status":"paid"' in v1_status, (run, v1_status)
            # The printed dualstack commands run as printed, without activating anything.
            report = next(c for c in commands if " shadow report " in c)
            assert "match rate" in run_printed(report, []) or "no comparisons" in run_printed(report, [])
            exports = [c for c in commands if c.startswith("export ")]
            status_command = next(c for c in commands if " rollout status " in c)
            assert "buatfilm" in run_printed(status_command, exports)
            # v2's metrics, as the guide prints them; and no key on any command line (`ps` shows them all).
            with urllib.request.urlopen(f"http://127.0.0.1:{base + 5}/metrics", timeout=10) as answer:
                assert b"dualstack_v2_" in answer.read()
            assert f"http://127.0.0.1:{base + 5}/metrics" in guide
            assert not [p for p in Path("/proc").glob("[0-9]*/cmdline")
                        if any(key.encode() in _cmdline(p) for key in KEYS.values())]
        finally:
            stop(process)
        for port in range(base, base + 6):  # everything it started has let go of its port
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds: TIME_WAIT is no user
                sock.bind(("127.0.0.1", port))

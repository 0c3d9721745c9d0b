from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.cli import ExitStatus, run
from tests.conftest import REPO


def test_validate_ok_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    example = REPO / "configs" / "routing.example.yaml"
    assert run(["validate", str(example)]) == ExitStatus.OK
    out = capsys.readouterr().out
    assert out == f"{example}: OK: 2 tenant(s) (1 on v1, 1 on v2), base domain agentbar.ai\n"


def test_validate_invalid_lists_every_issue_and_fails(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('upstreams: {v1: {url: "http://a:1"}, v2: {url: "nope"}}\n'
                   "base_domain: agentbar.ai\ntenants:\n  a: {backend: v3}\n  a: {backend: v1}\n")
    assert run(["validate", str(bad)]) == ExitStatus.INVALID
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{bad}:1: upstreams.v2.url: 'nope' is not a URL such as http://127.0.0.1:3002",
        f"{bad}:4: tenants.a.backend: unknown backend 'v3' (expected one of: v1, v2)",
        f"{bad}:5: tenants.a: duplicate key (first defined on line 4)",
        "3 issue(s) found",
    ]


def test_console_script_exit_codes(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = subprocess.run([sys.executable, "-m", "controlplane", "validate", str(missing)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert f"{missing}: (document): file not found" in result.stderr
    usage = subprocess.run([sys.executable, "-m", "controlplane", "frobnicate"],
                           capture_output=True, text=True, check=False)
    assert usage.returncode == 2


def test_serve_with_a_broken_file_exits_2_and_says_why(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tenants: {")
    result = subprocess.run(
        [sys.executable, "-m", "controlplane", "serve", "--config", str(bad), "--listen", "127.0.0.1:0",
         "--admin-listen", "127.0.0.1:0"],
        capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode == 2
    assert f"{bad}:1: (document): invalid YAML" in result.stderr
    assert "not starting" in result.stderr

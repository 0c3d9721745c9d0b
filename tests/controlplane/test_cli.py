from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from controlplane.cli import ExitStatus, run
from tests.conftest import REPO, Database


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


def test_nginx_render_diff_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = REPO / "configs" / "routing.example.yaml"
    out = tmp_path / "dualstack"
    assert run(["nginx", "render", "--config", str(example), "--out", str(out)]) == ExitStatus.OK
    assert "wrote 9 files" in capsys.readouterr().out
    assert (out / "tenants" / "buatfilm.conf").exists()
    assert run(["nginx", "render", "--config", str(example), "--out", str(out), "--diff"]) == ExitStatus.OK
    assert "no changes" in capsys.readouterr().out
    flipped = tmp_path / "routing.example.yaml"  # the same name: headers name the source file
    flipped.write_text(example.read_text().replace("backend: v1", "backend: v2"))
    assert run(["nginx", "render", "--config", str(flipped), "--out", str(out), "--diff"]) == ExitStatus.OK
    diff = capsys.readouterr().out
    assert "+    proxy_pass http://dualstack_router_then_v2;" in diff
    assert [line for line in diff.splitlines() if line.startswith("--- ")] == [
        "--- a/api/buatfilm.conf", "--- a/tenants/buatfilm.conf", "--- a/version.conf"]
    assert (out / "api" / "buatfilm.conf").read_text().count("dualstack_router_then_v1") == 6  # untouched


def test_nginx_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    https = tmp_path / "https.yaml"
    https.write_text((REPO / "configs" / "routing.example.yaml").read_text()
                     .replace('"http://127.0.0.1:3002"', '"https://127.0.0.1:3002"'))
    assert run(["nginx", "render", "--config", str(https), "--out", str(tmp_path / "o")]) == ExitStatus.INVALID
    assert "upstreams.v1.url is https://127.0.0.1:3002" in capsys.readouterr().err
    example = REPO / "configs" / "routing.example.yaml"
    assert run(["nginx", "check", "--config", str(example), "--nginx-conf", "/etc/nginx/nginx.conf"]) \
        == ExitStatus.USAGE
    assert "--nginx-conf needs --dir" in capsys.readouterr().err
    if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
        tls = tmp_path / "tls.yaml"
        tls.write_text((REPO / "configs" / "routing.example.yaml").read_text().replace(
            "\nnginx:\n", "\nnginx:\n  tls: {port: 8443, certificate: /missing/c.pem, certificate_key: /missing/k.pem}\n", 1))
        assert run(["nginx", "check", "--config", str(tls)]) == ExitStatus.INVALID
        assert "/missing/c.pem" in capsys.readouterr().err  # nginx's own message


def test_a_missing_state_schema_is_one_line_naming_the_fix(
    empty_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    example = REPO / "configs" / "routing.example.yaml"
    status = run(["rollout", "status", "--config", str(example), "--state-database-url", empty_database])
    err = capsys.readouterr().err
    assert status == ExitStatus.ENVIRONMENT
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "run `dualstack db migrate --target state`" in err and "dualstack_empty_" in err, err


def test_a_missing_payments_schema_is_one_line_naming_the_fix(
    empty_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run(["tenant", "list", "--admin-url", empty_database])
    err = capsys.readouterr().err
    assert status == ExitStatus.ENVIRONMENT
    assert len(err.strip().splitlines()) == 1, err
    assert "run `dualstack db migrate --target payments`" in err, err


def test_a_reader_that_goes_away_ends_quietly(tmp_path: Path) -> None:
    example = REPO / "configs" / "routing.example.yaml"
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes: `| head` that already quit
    try:
        result = subprocess.run([sys.executable, "-m", "controlplane", "validate", str(example)],
                                stdout=write, stderr=subprocess.PIPE, text=True, check=False, timeout=60)
    finally:
        os.close(write)
    assert result.returncode == ExitStatus.BROKEN_PIPE, result.stderr
    assert result.stderr == ""


def test_ctrl_c_exits_130_and_says_so(free_port: Callable[[], int], state: Database, tmp_path: Path) -> None:
    # The decider without --once runs until stopped, and Ctrl-C is how ops stop it in a terminal.
    config = tmp_path / "routing.yaml"
    config.write_text((REPO / "configs" / "routing.example.yaml").read_text())
    process = subprocess.Popen(
        [sys.executable, "-m", "controlplane", "rollout", "decide", "--config", str(config),
         "--prometheus-url", f"http://127.0.0.1:{free_port()}", "--interval", "0.2",
         "--state-database-url", state.admin_url, "--schema", state.layout.schema],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        assert process.stdout is not None
        process.stdout.readline()  # its first pass printed: it is past start-up and looping
        assert time.monotonic() < deadline
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == ExitStatus.INTERRUPTED, err
    assert "Traceback" not in err and "interrupted" in err, err

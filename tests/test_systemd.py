"""The systemd units: hardened, secrets only in environment files, and accepted by systemd itself."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

UNITS = sorted((REPO / "systemd").glob("*.service"))
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "User": "dualstack", "UMask": "0077", "CapabilityBoundingSet": ""}


def parse(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_every_service_is_hardened_and_ordered(unit: Path) -> None:
    service = parse(unit)["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == value, (unit.name, key)
    assert service.get("EnvironmentFile", "").lstrip("-").startswith("/etc/dualstack/")
    after = parse(unit)["Unit"]["After"].split()
    assert "network-online.target" in after and "postgresql.service" in after
    if service.get("Type") != "oneshot":
        assert service.get("Restart") == "on-failure"


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_no_secret_is_ever_on_a_command_line(unit: Path) -> None:
    command = parse(unit)["Service"]["ExecStart"]
    assert not re.search(r"://[^/\s]*:[^/\s]*@", command), "a password in a URL"
    for flag in ("--database-url", "--admin-url", "--state-database-url", "--midtrans-server-key", "--notify-url"):
        assert flag not in command, flag


def test_the_router_reloads_its_routing_file_on_systemctl_reload() -> None:
    service = parse(REPO / "systemd" / "dualstack-router.service")["Service"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # the router re-reads the file on SIGHUP
    assert "ExecReload" not in parse(REPO / "systemd" / "dualstack-v2.service")["Service"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not available")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    dualstack = shutil.which("dualstack") or str(REPO / ".venv" / "bin" / "dualstack")
    for unit in sorted((REPO / "systemd").iterdir()):
        # systemd checks that ExecStart exists: point it at this checkout's installed command.
        (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/dualstack/.venv/bin/dualstack", dualstack))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no",
                             *[str(p) for p in sorted(tmp_path.iterdir())]],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr

"""The systemd units: hardened, secrets only in environment files, and accepted by systemd itself."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.config.model import ServerLimits, UpstreamSpec
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


def test_every_timer_starts_a_oneshot_service_of_its_name() -> None:
    timers = sorted((REPO / "systemd").glob("*.timer"))
    assert {t.name for t in timers} >= {"dualstack-decider.timer", "dualstack-reconcile@.timer"}
    for timer in timers:
        service = timer.with_suffix(".service")
        assert service.exists(), timer.name
        assert parse(service)["Service"]["Type"] == "oneshot", service.name
        assert parse(timer)["Install"]["WantedBy"] == "timers.target"


def test_reconcile_runs_per_tenant_and_leaves_its_gauges_for_node_exporter() -> None:
    service = parse(REPO / "systemd" / "dualstack-reconcile@.service")["Service"]
    command = service["ExecStart"]
    assert "dualstack reconcile --tenant %i " in command and "--older-than 15m" in command
    metrics = command.split("--metrics-file ")[1].split()[0]
    assert metrics.startswith(service["ReadWritePaths"].lstrip("-") + "/") and "%i" in metrics
    assert service["EnvironmentFile"] == "/etc/dualstack/reconcile-%i.env"  # the token, never on the command line
    assert service["SuccessExitStatus"] == "1"  # stuck orders are the alert's business, not a failed unit


def test_the_reverse_sync_follows_per_tenant_with_its_store_and_secrets_from_the_environment_file() -> None:
    service = parse(REPO / "systemd" / "dualstack-reverse-sync@.service")["Service"]
    command = service["ExecStart"]
    assert "dualstack reverse-sync --from ${DUALSTACK_V1_STORE} --tenant %i --follow " in command
    assert service["EnvironmentFile"] == "/etc/dualstack/reverse-sync-%i.env"
    metrics = command.split("--metrics-file ")[1].split()[0]
    writable = [path.lstrip("-") for path in service["ReadWritePaths"].split()]
    assert any(metrics.startswith(path + "/") for path in writable) and "%i" in metrics
    assert "/var/www/api" in writable  # v1's SQLite generation is written in place
    assert service["Restart"] == "on-failure"  # `cutover complete` ends it with status 0: not restarted


def test_the_router_reloads_its_routing_file_on_systemctl_reload() -> None:
    service = parse(REPO / "systemd" / "dualstack-router.service")["Service"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # the router re-reads the file on SIGHUP
    assert "ExecReload" not in parse(REPO / "systemd" / "dualstack-v2.service")["Service"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not available")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    # The command installed beside the interpreter running the tests, wherever its environment is.
    installed = Path(sys.executable).parent / "dualstack"
    dualstack = str(installed) if installed.exists() else shutil.which("dualstack")
    assert dualstack is not None, "the dualstack command is not installed in this environment"
    for unit in sorted((REPO / "systemd").iterdir()):
        # systemd checks that ExecStart exists: point it at this checkout's installed command.
        (tmp_path / unit.name).write_text(unit.read_text().replace("/opt/dualstack/.venv/bin/dualstack", dualstack))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no",
                             *[str(p) for p in sorted(tmp_path.iterdir())]],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["dualstack-router.service", "dualstack-v2.service"])
def test_servers_may_open_more_descriptors_than_their_workers_accept(name: str) -> None:
    service = parse(REPO / "systemd" / name)["Service"]
    workers = int(re.search(r"--workers (\d+)", service["ExecStart"]).group(1))  # type: ignore[union-attr]
    pools = 2 * UpstreamSpec("v1", "http://x").pool_size  # both upstreams' connections, per worker
    needed = workers * (ServerLimits().max_connections + pools + 64)  # + listeners, logs, the state database
    assert int(service.get("LimitNOFILE", "1024")) >= needed, (name, needed)

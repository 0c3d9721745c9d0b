"""`cutover --to v1` never moves a tenant to a v1 that does not hold its orders, override or not."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from controlplane.cli import ExitStatus, run
from tests.conftest import Database, routing_yaml


def test_the_way_back_to_a_v1_that_does_not_hold_the_tenant_is_refused_even_with_an_override(
    free_port: Callable[[], int], tmp_path: Path, state: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "routing.yaml"
    text = routing_yaml(f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}",
                        "shop: {backend: v1}\nalpha: {backend: v2}\n", v1_tenants=["shop"])
    config.write_text(text)
    status = run(["cutover", "alpha", "--to", "v1", "--config", str(config), "--no-nginx",
                  "--override", "handover", "--override", "health", "--reason", "v2 is down, move it anyway",
                  "--state-database-url", state.control_url])
    out = capsys.readouterr()
    assert status == ExitStatus.INVALID, out
    assert "[FAIL] handover: v1 does not hold alpha's orders" in out.out, out.out
    assert "no override moves a tenant there" in out.out
    assert config.read_text() == text  # nothing flipped

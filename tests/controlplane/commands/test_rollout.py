"""`dualstack rollout ...` as an operator sees it."""

from __future__ import annotations

import pytest

from controlplane.cli import ExitStatus, run


def test_simulate_shows_its_progress_soak_by_soak(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["rollout", "simulate", "--seeds", "1"]) == ExitStatus.OK
    out, err = capsys.readouterr()
    assert "1 seeded soak(s) per cell" in out and "\r" not in err  # not a terminal here: whole log lines
    [last] = [line for line in err.splitlines() if line.startswith("simulating: ")][-1:]
    total = last.split()[1].split("/")[1]
    assert last.startswith(f"simulating: {total}/{total} soaks (100%), "), err

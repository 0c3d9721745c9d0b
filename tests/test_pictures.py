"""scripts/pictures.py end to end: a scratch state database, the project's own report and status page,
the dashboard's layout, each screenshot by headless Chromium."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SERVER_URL

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.timeout(240)
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_the_script_makes_the_three_pictures(tmp_path: Path) -> None:
    out = tmp_path / "pictures"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "pictures.py"), "--out", str(out)],
                            capture_output=True, text=True, timeout=220, check=False,
                            env={**os.environ, "DUALSTACK_BENCH_ADMIN_URL": SERVER_URL})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["dashboard.png", "shadow-report.png", "status.png"]
    for png in out.iterdir():
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", png.name
        width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
        assert width == 1200 and 600 <= height <= 2000, (png.name, height)
        assert 10_000 < len(data) < 300_000, (png.name, len(data))  # drawn, and small enough for the README

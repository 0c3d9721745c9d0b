"""Shadow reports from a real state database, written by the router's own store writer."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from controlplane.cli import ExitStatus, run
from controlplane.db.migrate import bundled_migrations, migrate
from controlplane.rollout.stats import wilson
from controlplane.shadow.compare import Difference
from controlplane.shadow.report import parse_since
from controlplane.shadow.samples import STATE_SCHEMA
from proxy.shadow_store import ShadowStore
from tests.conftest import Database

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
async def filled(database: Database) -> tuple[str, str]:
    layout = dataclasses.replace(database.layout, schema=STATE_SCHEMA)
    migrate(database.admin_url, layout, migrations=bundled_migrations("state_migrations"))
    tenant = "report" + os.urandom(3).hex()
    store = ShadowStore(database.app_url, STATE_SCHEMA)
    await store.open()
    for i in range(200):
        if i % 10 == 0:
            differences = (Difference("$.order.totalAmount", "value_changed", 150000, 150001),
                           Difference("$.order.email", "value_changed", "budi@example.com", "b@example.com"))
            store.record(tenant, "GET /orders/{id}/status", "mismatch", 0.004, 0.012, differences, f"req-{i}")
        else:
            store.record(tenant, "GET /orders/{id}/status", "match" if i % 7 else "noise", 0.003, 0.008, (), "")
    store.record(tenant, "POST /payment/create", "match", 0.030, 0.045, (), "")
    await store.close()
    return tenant, database.app_url


def test_wilson_interval() -> None:
    low, high = wilson(180, 200)
    assert 0.85 < low < 0.9 < high < 0.94
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(5, 5)[1] == 1.0


def test_parse_since() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert parse_since("24h", now).day == 26 and parse_since("30m", now).minute == 30
    with pytest.raises(ValueError, match="use 30m, 24h, 7d"):
        parse_since("yesterday", now)


async def test_reports_in_every_format(filled: tuple[str, str], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    tenant, url = filled
    base = ["shadow", "report", "--tenant", tenant, "--state-database-url", url, "--since", "1h"]
    assert run([*base, "--format", "json", "--out", str(tmp_path / "r.json")]) == ExitStatus.OK
    data = json.loads((tmp_path / "r.json").read_text())
    assert (data["comparisons"], data["mismatches"]) == (201, 20)
    assert data["ci_low"] < data["match_rate"] < data["ci_high"]
    [status] = [e for e in data["endpoints"] if e["endpoint"] == "GET /orders/{id}/status"]
    assert (status["comparisons"], status["mismatches"]) == (200, 20)
    fields = {(f["path"], f["count"]) for f in data["fields"]}
    assert fields == {("$.order.totalAmount", 20), ("$.order.email", 20)}
    amount = next(f for f in data["fields"] if f["path"] == "$.order.totalAmount")
    assert amount["examples"][0] == [150000, 150001]
    assert sum(data["primary_latency"]) == 201 and len(data["timeline"]) >= 1
    assert run([*base, "--format", "md", "--out", str(tmp_path / "r.md")]) == ExitStatus.OK
    assert run([*base, "--format", "html", "--out", str(tmp_path / "r.html")]) == ExitStatus.OK
    for name in ("r.json", "r.md", "r.html"):
        text = (tmp_path / name).read_text()
        assert "budi" not in text and "b@example.com" not in text, name  # PII never in a report
    markdown = (tmp_path / "r.md").read_text()
    assert "| `GET /orders/{id}/status` | 200 | " in markdown
    html = (tmp_path / "r.html").read_text()
    assert "<script src" not in html and "<link" not in html and "http://" not in html.split("<body>")[1]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
async def test_the_html_report_renders_its_charts_in_chromium(filled: tuple[str, str], tmp_path: Path) -> None:
    tenant, url = filled
    out = tmp_path / "report.html"
    assert run(["shadow", "report", "--tenant", tenant, "--state-database-url", url, "--since", "1h",
                "--format", "html", "--out", str(out)]) == ExitStatus.OK
    assert CHROMIUM is not None
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--dump-dom", out.as_uri()],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert 'data-charts-drawn="2"' in dom  # the inline script ran, and both charts have content
    assert dom.count("<rect") >= 20 and "<polyline" in dom
    assert "Uncaught" not in result.stderr  # no JavaScript error
    assert "90.0%" in dom  # the match rate shown: (161 match + 20 noise) of 201

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
from controlplane.shadow.compare import Difference
from controlplane.shadow.report import parse_since
from controlplane.state.schema import STATE_SCHEMA
from proxy.router.shadow_store import ShadowStore
from tests.conftest import Database

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
async def filled(database: Database) -> tuple[str, str]:
    layout = dataclasses.replace(database.layout, schema=STATE_SCHEMA)
    migrate(database.admin_url, layout, migrations=bundled_migrations("controlplane.state"))
    tenant = "report" + os.urandom(3).hex()
    store = ShadowStore(database.router_url, STATE_SCHEMA)
    await store.open()
    for i in range(200):
        if i % 10 == 0:
            differences = (Difference("$.order.totalAmount", "value_changed", 150000, 150001),
                           Difference("$.order.email", "value_changed", "budi@example.com", "b@example.com"))
            store.record(tenant, "GET /orders/{id}/status", "mismatch", 0.004, 0.012, differences, f"req-{i}",
                         primary_backend="v1")
        else:
            store.record(tenant, "GET /orders/{id}/status", "match" if i % 7 else "noise", 0.003, 0.008, (), "",
                         primary_backend="v1")
    store.record(tenant, "POST /payment/create", "match", 0.030, 0.045, (), "", primary_backend="v1")
    await store.close()
    return tenant, database.control_url


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
    assert "88.6%" in dom  # the match rate shown: 155 matches of 155 + 20 mismatches (26 noise are neither)


async def test_each_incompatibility_of_the_real_v1_has_its_own_class(database: Database, tmp_path: Path) -> None:
    from controlplane.config.model import ShadowSpec
    from controlplane.shadow.compare import Normalisation, compare

    layout = dataclasses.replace(database.layout, schema=STATE_SCHEMA)
    migrate(database.admin_url, layout, migrations=bundled_migrations("controlplane.state"))
    tenant = "real" + os.urandom(3).hex()
    spec = ShadowSpec()
    rules = Normalisation(ignore=spec.ignore, ignore_entirely=spec.ignore_entirely)

    def diff(primary: object, shadow: object) -> tuple[Difference, ...]:
        return compare(200, json.dumps(primary).encode(), 200, json.dumps(shadow).encode(), rules).differences

    read, create = "GET /orders/{id}/status", "POST /payment/create"
    spelling = diff({"success": True, "order": {"status": "pending"}},
                    {"success": True, "order": {"status": "PENDING_PAYMENT"}})
    amount = diff({"success": True, "order": {"totalAmount": "149000.00"}},
                  {"success": True, "order": {"totalAmount": 149000}})
    no_link = diff({"success": True}, {"success": True, "paymentUrl": "https://app.midtrans.com/snap/v4/x", "token": "t"})
    store = ShadowStore(database.router_url, STATE_SCHEMA)
    await store.open()
    for i in range(30):  # v2 answered 404, then found the order when asked again
        store.record(tenant, read, "not_replicated", 0.004, 0.006, (), f"lag-{i}", primary_backend="v1")
    for i in range(10):
        store.record(tenant, read, "mismatch", 0.004, 0.006, spelling, f"spell-{i}", primary_backend="v1")
    for i in range(5):
        store.record(tenant, read, "mismatch", 0.004, 0.006, amount, f"amount-{i}", primary_backend="v1")
    for i in range(3):
        store.record(tenant, create, "mismatch", 0.004, 0.006, no_link, f"link-{i}", primary_backend="v1")
    for i in range(50):
        store.record(tenant, read, "match", 0.004, 0.006, (), "", primary_backend="v1" if i < 2 else "v2")
    await store.close()

    out = tmp_path / "r.json"
    assert run(["shadow", "report", "--tenant", tenant, "--state-database-url", database.control_url, "--since", "1h",
                "--format", "json", "--out", str(out)]) == ExitStatus.OK
    data = json.loads(out.read_text())
    # Sync lag is its own class, outside the rate; the rate is over the 50 matches and 18 mismatches.
    assert (data["not_replicated"], data["mismatches"], data["matches"]) == (30, 18, 50)
    assert data["match_rate"] == 50 / 68
    assert data["kinds"] == {"value_changed": 10, "type_changed": 5, "extra": 6}
    fields = {(f["endpoint"], f["path"]): f for f in data["fields"]}
    assert fields[(read, "$.order.status")]["kind"] == "value_changed"
    assert fields[(read, "$.order.status")]["examples"][0] == ["pending", "PENDING_PAYMENT"]
    assert fields[(read, "$.order.totalAmount")]["kind"] == "type_changed"
    assert fields[(read, "$.order.totalAmount")]["examples"][0] == ["149000.00", 149000]  # not redacted as a phone
    assert fields[(create, "$.paymentUrl")]["kind"] == "extra"  # v1 answered without a payment link
    assert fields[(create, "$.paymentUrl")]["examples"][0] == [None, "[redacted]"]
    by_primary = {row["endpoint"]: row for row in data["by_primary"]}
    assert (by_primary["v1"]["matches"], by_primary["v1"]["mismatches"], by_primary["v1"]["not_replicated"]) == (
        2, 18, 30)
    assert (by_primary["v2"]["matches"], by_primary["v2"]["mismatches"]) == (48, 0)
    markdown = tmp_path / "r.md"
    assert run(["shadow", "report", "--tenant", tenant, "--state-database-url", database.control_url, "--since", "1h",
                "--format", "md", "--out", str(markdown)]) == ExitStatus.OK
    text = markdown.read_text()
    assert "not replicated yet 30" in text and "- type_changed (type differs" in text
    html = tmp_path / "r.html"
    assert run(["shadow", "report", "--tenant", tenant, "--state-database-url", database.control_url, "--since", "1h",
                "--format", "html", "--out", str(html)]) == ExitStatus.OK
    assert '<span id="not-replicated">30</span>' in html.read_text()


async def test_an_empty_report_says_there_are_no_comparisons_yet(filled: tuple[str, str], tmp_path: Path) -> None:
    _, url = filled
    base = ["shadow", "report", "--tenant", "unshadowed", "--state-database-url", url, "--since", "1h"]
    for fmt in ("md", "html"):
        assert run([*base, "--format", fmt, "--out", str(tmp_path / f"r.{fmt}")]) == ExitStatus.OK
        text = (tmp_path / f"r.{fmt}").read_text()
        assert "There are no comparisons yet for unshadowed in this window" in text, fmt
        assert "0.0% to 100.0%" not in text and "confidence interval" not in text, fmt  # no rate of 0 out of 0

"""The dashboard's layout picture (scripts/pictures.py) shows every panel of configs/grafana/dualstack.json
where Grafana places it, with its PromQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from markupsafe import escape

from controlplane.render import dashboard_layout
from controlplane.render.dashboard_layout import PanelBox

DASHBOARD = Path(__file__).resolve().parents[3] / "configs" / "grafana" / "dualstack.json"


def test_every_panel_of_the_dashboard_is_in_the_layout_at_its_grid_position() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    view = dashboard_layout.load(DASHBOARD, "configs/grafana/dualstack.json")
    expected = sorted((p["title"], p["type"], p["gridPos"]["x"], p["gridPos"]["y"], p["gridPos"]["w"],
                       p["gridPos"]["h"], tuple(t["expr"] for t in p["targets"])) for p in panels)
    shown = sorted((b.title, b.type, b.x, b.y, b.w, b.h, b.expressions) for b in view.panels)
    assert shown == expected and len(shown) == len(panels) > 10
    assert [(b.y, b.x) for b in view.panels] == sorted((b.y, b.x) for b in view.panels)  # reading order
    assert view.height_px == max(b.y + b.h for b in view.panels) * dashboard_layout.ROW_PX

    page = dashboard_layout.render_html(view)
    assert "panel layout generated from configs/grafana/dualstack.json (no data)" in page
    for panel in panels:
        assert f'<div class="title">{escape(panel["title"])}</div>' in page
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained
    assert '{tenant=~&#34;$tenant&#34;}' in page  # PromQL escaped, not interpreted as HTML


def test_panels_folded_into_rows_and_odd_grid_positions_still_get_a_box() -> None:
    view = dashboard_layout.layout({"title": "t", "panels": [
        {"type": "row", "title": "Shadow", "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1}, "panels": [
            {"type": "stat", "title": "folded", "gridPos": {"x": 30, "y": 2, "w": 99, "h": True},
             "targets": [{"expr": "up"}, {"refId": "B"}]}]},
        {"type": "text", "title": "no grid"}]}, "x.json")
    assert view.panels == (PanelBox("Shadow", "row", 0, 0, 24, 1, ()), PanelBox("no grid", "text", 0, 0, 24, 8, ()),
                           PanelBox("folded", "stat", 23, 2, 24, 8, ("up",)))


def test_a_file_too_large_to_be_a_dashboard_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text(" " * (dashboard_layout.MAX_BYTES + 1))
    with pytest.raises(ValueError, match="not a dashboard"):
        dashboard_layout.load(big, "big.json")

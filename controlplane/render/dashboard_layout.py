"""A picture of the Grafana dashboard without a Grafana: each panel of configs/grafana/*.json placed at
its gridPos on Grafana's 24-column grid, with its title, type and PromQL expressions, as an HTML page
(templates/dashboard/layout.html.j2). No data: it shows what the dashboard asks, not what it answers.
Used by scripts/pictures.py for the README."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jinja2

TEMPLATES: Final = Path(__file__).resolve().parents[2] / "templates" / "dashboard"
COLUMNS: Final = 24  # Grafana's grid
ROW_PX: Final = 19  # one grid row (Grafana's is 30 px; tighter keeps the picture small, the text still fits)
MAX_BYTES: Final = 1_000_000  # a dashboard file is a few kB; anything this big is not ours


@dataclass(frozen=True)
class PanelBox:
    title: str
    type: str
    x: int
    y: int
    w: int
    h: int
    expressions: tuple[str, ...]

    @property
    def left_pct(self) -> float:
        return 100 * self.x / COLUMNS

    @property
    def width_pct(self) -> float:
        return 100 * self.w / COLUMNS


@dataclass(frozen=True)
class DashboardLayout:
    title: str
    source: str  # the file, as the page names it
    panels: tuple[PanelBox, ...]

    @property
    def height_px(self) -> int:
        return max((p.y + p.h for p in self.panels), default=0) * ROW_PX


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1000 else default


def _panels(items: list[Any]) -> list[dict[str, Any]]:
    """Every panel, those folded into a row panel's `panels` too."""
    found: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict):
            found.append(item)
            found.extend(_panels(item.get("panels") or []))
    return found


def layout(dashboard: dict[str, Any], source: str) -> DashboardLayout:
    """The view-model: one box per panel of the dashboard, in reading order (top to bottom, left to right)."""
    boxes = []
    for panel in _panels(dashboard.get("panels") or []):
        grid = panel.get("gridPos") or {}
        targets = [t for t in panel.get("targets") or [] if isinstance(t, dict)]
        boxes.append(PanelBox(
            title=str(panel.get("title", "")), type=str(panel.get("type", "")),
            x=min(_int(grid.get("x"), 0), COLUMNS - 1), y=_int(grid.get("y"), 0),
            w=max(1, min(_int(grid.get("w"), COLUMNS), COLUMNS)), h=max(1, _int(grid.get("h"), 8)),
            expressions=tuple(str(t["expr"]) for t in targets if t.get("expr"))))
    return DashboardLayout(str(dashboard.get("title", "")), source, tuple(sorted(boxes, key=lambda b: (b.y, b.x))))


def load(path: Path, source: str) -> DashboardLayout:
    with path.open("rb") as f:
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise ValueError(f"{path}: larger than {MAX_BYTES} bytes, not a dashboard")
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a dashboard (a JSON object)")
    return layout(data, source)


def render_html(view: DashboardLayout) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             autoescape=True, keep_trailing_newline=True)
    return env.get_template("layout.html.j2").render(view=view, row_px=ROW_PX)

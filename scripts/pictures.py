"""Regenerate the README's pictures (docs/pictures/*.png) from the project's own code, never by hand:

    .venv/bin/python scripts/pictures.py [--out docs/pictures]

1. shadow-report.png: `dualstack shadow report --format html` for a tenant shadowed for six hours,
   its results written into a scratch state database by the router's own store (matches, a status
   spelling mismatch, an amount whose type differs, reads not replicated yet, noise);
2. status.png: `dualstack status --html` for a small fleet (a routing file of eight tenants, a
   rollback lock, a soaking rollout with its last decision, shadow counts; the one router address
   given has nothing listening, so "Sources" shows it as unreachable);
3. dashboard.png: the panel layout of configs/grafana/dualstack.json (controlplane/render/
   dashboard_layout.py), since no Grafana runs here.

Each page is screenshot by headless Chromium. Needs a local PostgreSQL (DUALSTACK_BENCH_ADMIN_URL, as
the benchmarks: bench/scratch_database.py makes a database of its own and drops it afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import psycopg
from psycopg.conninfo import make_conninfo

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from scratch_database import ScratchDatabase, scratch_database  # noqa: E402

from controlplane.cli import ExitStatus, run  # noqa: E402
from controlplane.config.model import ShadowSpec  # noqa: E402
from controlplane.render import dashboard_layout  # noqa: E402
from controlplane.rollout.decide import Action, Decision, Memory, Verdict  # noqa: E402
from controlplane.shadow.compare import Difference, Normalisation, compare  # noqa: E402
from controlplane.shadow.samples import bucket_index, empty_buckets  # noqa: E402
from controlplane.state import shadow_samples  # noqa: E402
from controlplane.state.rollouts import Phase, RolloutStore  # noqa: E402
from controlplane.state.schema import STATE_SCHEMA, query  # noqa: E402
from proxy.router.shadow_store import ShadowStore  # noqa: E402

DASHBOARD: Final = ROOT / "configs" / "grafana" / "dualstack.json"
READ: Final = "GET /orders/{id}/status"
CREATE: Final = "POST /payment/create"
HOURS: Final = 6
WIDTH: Final = 1200
# The window's height for each picture: tall enough for the whole page, no taller (the dashboard's
# follows from its grid).
HEIGHTS: Final = {"shadow-report.png": 1480, "status.png": 700}
ROUTING: Final = """\
upstreams:
  v1: {{url: "http://127.0.0.1:{v1}", tenants: [buatfilm]}}  # v1 holds one tenant
  v2: {{url: "http://127.0.0.1:{v2}"}}
base_domain: agentbar.ai
platform_subdomains: [funnel, funnelstaging, www, admin]
tenants:
  buatfilm: {{backend: v2, hosts: [buatfilm.agentbar.ai, shop.buatfilm.id]}}  # moved; rolled back by a lock
  batikindah: {{backend: v2}}
  warungsehat: {{backend: v2}}
  sepatuku: {{backend: v2}}
  kopikita: {{backend: v2}}
  tokobuku: {{backend: v2}}
  demo: {{backend: v2}}
  lapakgame: {{backend: v2}}
"""


def _differences(primary: object, shadow: object) -> tuple[Difference, ...]:
    """What the router's comparison finds between these two answers, with the default rules."""
    spec = ShadowSpec()
    rules = Normalisation(ignore=spec.ignore, ignore_entirely=spec.ignore_entirely)
    return compare(200, json.dumps(primary).encode(), 200, json.dumps(shadow).encode(), rules).differences


async def _record_now(db: ScratchDatabase) -> None:
    """The current minute, through the router's own writer: samples with redacted examples."""
    spelling = _differences({"success": True, "order": {"status": "pending"}},
                            {"success": True, "order": {"status": "PENDING_PAYMENT"}})
    amount = _differences({"success": True, "order": {"totalAmount": "149000.00"}},
                          {"success": True, "order": {"totalAmount": 149000}})
    store = ShadowStore(db.router_url, STATE_SCHEMA)
    await store.open()
    for i in range(2):
        store.record("buatfilm", READ, "mismatch", 0.004, 0.006, spelling, f"spell-{i}", primary_backend="v1")
    store.record("buatfilm", READ, "mismatch", 0.005, 0.007, amount, "amount-0", primary_backend="v1")
    for _ in range(36):
        store.record("buatfilm", READ, "match", 0.004, 0.006, (), "", primary_backend="v1")
    for i in range(4):
        store.record("buatfilm", READ, "not_replicated", 0.004, 0.005, (), f"lag-{i}", primary_backend="v1")
    for i in range(8):
        store.record("buatfilm", CREATE, "noise" if i % 4 == 0 else "match", 0.180, 0.095, (), "",
                     primary_backend="v1")
    await store.close()


def _buckets(rng: random.Random, n: int, median_ms: float) -> list[int]:
    buckets = empty_buckets()
    for _ in range(n):
        buckets[bucket_index(rng.lognormvariate(0, 0.5) * median_ms)] += 1
    return buckets


def _record_history(db: ScratchDatabase) -> None:
    """The hours before, minute by minute, with the SQL the router's writer runs: the spelling
    mismatches fall two hours ago (v2 learnt most of v1's status names); sync lag comes in bursts."""
    rng = random.Random(18)
    now = int(time.time() // 60 * 60)
    counts, fields = query(shadow_samples.UPSERT_COUNTS, STATE_SCHEMA), query(shadow_samples.UPSERT_FIELDS,
                                                                              STATE_SCHEMA)
    with psycopg.connect(db.router_url) as conn:
        for minute in range(now - HOURS * 3600, now, 60):
            age_h = (now - minute) / 3600
            reads = rng.randint(20, 45)
            spelling = rng.randint(1, 4) if age_h > 2 else int(rng.random() < 0.2)
            amount = 1 if rng.random() < 0.15 else 0
            lag = rng.randint(2, 6) if rng.random() < 0.1 else 0
            noise = rng.randint(0, 2)
            matches = reads - spelling - amount - lag - noise
            conn.execute(counts, ("buatfilm", READ, minute, "v1", matches, spelling + amount, noise, lag,
                                  _buckets(rng, reads, 4), _buckets(rng, reads, 6)))
            for path, kind, n in (("$.order.status", "value_changed", spelling),
                                  ("$.order.totalAmount", "type_changed", amount)):
                if n:
                    conn.execute(fields, ("buatfilm", READ, path, kind, minute, n))
            creates = rng.randint(0, 4)
            conn.execute(counts, ("buatfilm", CREATE, minute, "v1", creates, 0, 0, 0,
                                  _buckets(rng, creates, 180), _buckets(rng, creates, 90)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _check(status: ExitStatus, *allowed: ExitStatus) -> None:
    if status not in (ExitStatus.OK, *allowed):
        raise SystemExit(f"pictures: a dualstack command failed ({status.name})")


def _pages(db: ScratchDatabase, work: Path) -> dict[str, tuple[Path, int]]:
    """The three HTML pages (with the window height each needs), made by the project's own commands
    and renderer."""
    control_url = make_conninfo(db.admin_url, user=db.layout.control_role)
    asyncio.run(_record_now(db))
    _record_history(db)
    pages = {name: work / name.replace(".png", ".html") for name in (*HEIGHTS, "dashboard.png")}
    _check(run(["shadow", "report", "--tenant", "buatfilm", "--state-database-url", control_url,
                "--since", f"{HOURS}h", "--format", "html", "--out", str(pages["shadow-report.png"])]))

    routing = work / "routing.yaml"
    routing.write_text(ROUTING.format(v1=_free_port(), v2=_free_port()))
    with contextlib.redirect_stdout(sys.stderr):
        _check(run(["rollout", "rollback", "buatfilm", "--reason", "v2 error rate 4.1% over 5 min",
                    "--config", str(routing), "--state-database-url", control_url]))
    store = RolloutStore(control_url, STATE_SCHEMA)
    soaking_since = datetime.now(UTC) - timedelta(hours=7, minutes=20)
    store.save("demo", Phase.SOAKING, soaking_since, Memory())
    store.record("demo", Decision(Action.CONTINUE, Verdict.INCONCLUSIVE,
                                  ("soaking: 7 h 20 min of 24 h, no harm seen",)), dry_run=False)
    store.save("buatfilm", Phase.ROLLED_BACK, datetime.now(UTC) - timedelta(hours=3), Memory())
    store.save("tokobuku", Phase.PROMOTED, datetime.now(UTC) - timedelta(days=3), Memory())
    store.record("tokobuku", Decision(Action.PROMOTE, Verdict.GO, ("24 h clean on v2: promoted",)), dry_run=False)
    store.save("lapakgame", Phase.HELD, datetime.now(UTC) - timedelta(hours=30), Memory())
    store.record("lapakgame", Decision(Action.HOLD, Verdict.INCONCLUSIVE,
                                       ("held by ops: waiting for the merchant's go-ahead",)), dry_run=False)
    _check(run(["status", "--config", str(routing), "--state-database-url", control_url, "--timeout-s", "2",
                "--router-admin-url", f"http://127.0.0.1:{_free_port()}", "--html", str(pages["status.png"])]),
           ExitStatus.ENVIRONMENT)  # partial: the router address has nothing listening, as intended

    view = dashboard_layout.load(DASHBOARD, f"configs/grafana/{DASHBOARD.name}")
    pages["dashboard.png"].write_text(dashboard_layout.render_html(view))
    heights = {**HEIGHTS, "dashboard.png": view.height_px + 70}
    return {name: (page, heights[name]) for name, page in pages.items()}


def screenshot(chromium: str, page: Path, png: Path, height: int, profile: Path) -> None:
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         f"--user-data-dir={profile}", f"--window-size={WIDTH},{height}", f"--screenshot={png}", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0 or not png.exists():
        raise SystemExit(f"pictures: chromium could not screenshot {page.name}: {result.stderr[-1000:]}")


def optimise(png: Path) -> None:
    """Smaller files when a PNG optimiser is installed; as they are otherwise."""
    if shutil.which("pngquant"):
        subprocess.run(["pngquant", "--force", "--skip-if-larger", "--output", str(png), "--", str(png)],
                       check=False, timeout=120)
    if shutil.which("optipng"):
        subprocess.run(["optipng", "-quiet", "-o2", str(png)], check=False, timeout=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "pictures", help="default: docs/pictures")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"),
                        help="the Chromium binary (default: chromium on PATH)")
    ns = parser.parse_args(argv)
    if not ns.chromium:
        parser.error("no chromium found: install it (apt-get install chromium) or pass --chromium")
    ns.out.mkdir(parents=True, exist_ok=True)
    os.environ["LOGNAME"] = "ops"  # who the pictures' rollback lock names (events.actor), not whoever ran this
    with tempfile.TemporaryDirectory(prefix="dualstack-pictures-") as scratch:
        work = Path(scratch)
        with scratch_database(state=True) as db:
            pages = _pages(db, work)
        for name, (page, height) in pages.items():
            png = ns.out / name
            screenshot(ns.chromium, page, png, height, work / "profile")
            optimise(png)
            print(f"{png}: {png.stat().st_size // 1024} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`dualstack status` over a fleet: reading a real state database (one query per table) and a router's
/routes (the real routing table's view, served on loopback), then building and rendering the view.

    .venv/bin/python bench/status.py [--tenants 10000] [--routers 3]

The state database holds, per tenant: a rollout soaking for hours with --decisions decisions, and
--minutes minutes of shadow counts; one tenant in a hundred is pinned by a rollback lock.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
from config_load import routing  # bench/config_load.py, beside this file
from psycopg.conninfo import make_conninfo
from scratch_database import scratch_database  # bench/scratch_database.py, beside this file

from controlplane.config import load_config
from controlplane.db.migrate import bundled_migrations, migrate
from controlplane.state.schema import STATE_SCHEMA
from controlplane.status.gather import gather, read_routes, read_state
from controlplane.status.render import render_html, render_json, render_table
from controlplane.status.view import build_view
from proxy.router.routing import RoutingTable


def fill(admin_url: str, slugs: list[str], decisions: int, minutes: int, now: datetime) -> None:
    s = STATE_SCHEMA
    with psycopg.connect(admin_url) as conn:
        with conn.cursor().copy(f"COPY {s}.rollouts (tenant, phase, soak_started_at) FROM STDIN") as copy:
            for i, slug in enumerate(slugs):
                copy.write_row((slug, "soaking", now - timedelta(minutes=i % 1440)))
        with conn.cursor().copy(f"COPY {s}.rollout_decisions (tenant, at, action, verdict, dry_run, reasons, "
                                "checks) FROM STDIN") as copy:
            for slug in slugs:
                for d in range(decisions):
                    copy.write_row((slug, now - timedelta(minutes=d), "continue", "inconclusive", False,
                                    json.dumps(["soaking: no harm seen"]), "[]"))
        with conn.cursor().copy(f"COPY {s}.shadow_counts (tenant, endpoint, minute, primary_backend, matches, "
                                "mismatches, primary_buckets, shadow_buckets) FROM STDIN") as copy:
            for slug in slugs:
                for m in range(minutes):
                    copy.write_row((slug, "GET /orders/{id}/status", now - timedelta(minutes=m + 1), "v1", 99, 1,
                                    "{1,2,3}", "{1,2,3}"))
        with conn.cursor().copy(f"COPY {s}.rollout_locks (tenant, backend, declared_backend, reason, actor) "
                                "FROM STDIN") as copy:
            for slug in slugs[::100]:
                copy.write_row((slug, "v1", "v2", "bench", "bench"))
        conn.execute(f"ANALYZE {s}.rollout_decisions")


@contextmanager
def routes_server(body: bytes) -> Iterator[str]:
    class Routes(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Routes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()


def timed(what: str, call: Callable[[], Any]) -> Any:
    started, cpu = time.perf_counter(), time.process_time()
    value = call()
    print(f"  {what:32} {time.perf_counter() - started:7.3f} s wall {time.process_time() - cpu:7.3f} s CPU")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--routers", type=int, default=3)
    parser.add_argument("--decisions", type=int, default=20, help="per tenant")
    parser.add_argument("--minutes", type=int, default=10, help="of shadow counts per tenant")
    args = parser.parse_args()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp, scratch_database() as database:
        path = Path(tmp) / "routing.yaml"
        path.write_text(routing(args.tenants))
        config = load_config(path)
        layout = dataclasses.replace(database.layout, schema=STATE_SCHEMA,
                                     control_role=database.layout.owner_role.replace("_owner", "_control"))
        migrate(database.admin_url, layout, migrations=bundled_migrations("controlplane.state"))
        slugs = sorted(config.tenants)
        fill(database.admin_url, slugs, args.decisions, args.minutes, now)
        body = json.dumps(RoutingTable(config, 1).describe()).encode()
        print(f"{args.tenants} tenants, {args.routers} router(s) answering /routes of {len(body) / 1e6:.1f} MB, "
              f"{args.tenants * args.decisions} decisions, {args.tenants * args.minutes} shadow count rows")
        with routes_server(body) as url:
            timed("  of which the routing file", lambda: load_config(path))
            timed("  of which the state database", lambda: read_state(database.admin_url, STATE_SCHEMA, now,
                                                                     86400, 30.0))
            timed("  of which one router's /routes", lambda: read_routes(url, 30.0))
            gathered = timed("gather (state + routers, at once)", lambda: gather(
                path, database.admin_url, STATE_SCHEMA, [url] * args.routers, None, now))
        assert all(s.ok is not False for s in gathered.sources), gathered.sources
        view = timed("build the view", lambda: build_view(gathered))
        for name, render in (("render the table", render_table), ("render --json", render_json),
                             ("render --html", render_html)):
            text = timed(name, lambda render=render: render(view))
            print(f"  {'':32} {len(text) / 1e6:7.1f} MB")
    with psycopg.connect(make_conninfo(database.admin_url, dbname="postgres"), autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{layout.control_role}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())

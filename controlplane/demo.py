"""`dualstack demo`: the whole stack on embedded defaults, stopped cleanly with Ctrl-C.

PostgreSQL (DATABASE_URL, else an embedded server from the pgserver package under the state
folder), migrations, two tenants (buatfilm on v1, demo on v2), the fake Midtrans, the legacy v1
stand-in, v2 (2 workers) and the router (2 workers), all on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from controlplane.config import load_config
from controlplane.db.layout import DEFAULT_LAYOUT, DatabaseLayout
from controlplane.db.migrate import bundled_migrations, migrate
from controlplane.db.tenants import NewTenant, TenantAdmin, TenantError
from controlplane.errors import EnvironmentProblem
from controlplane.processes import ProcessFailed, ProcessGroup, port_is_free
from controlplane.shadow.samples import STATE_SCHEMA

DEMO_ROUTING = """\
# The demo's routing file. Edit it while the demo runs: flip a tenant's backend and save, and the
# router picks it up within 2 seconds. Break it on purpose, and the router keeps the last good
# version and says what is wrong (see the router's log, and /routes on the admin port).
upstreams:
  v1: {{url: "http://127.0.0.1:{v1}", tenants: [buatfilm]}}   # the legacy API holds buatfilm's orders
  v2: {{url: "http://127.0.0.1:{v2}"}}
base_domain: agentbar.ai
platform_subdomains: [funnel, funnelstaging, www, admin]
trusted_proxies: ["127.0.0.1/32", "::1/128"]
# `dualstack cutover` normally wants shadow evidence first; the demo mirrors nothing.
cutover: {{min_comparisons: 0}}
tenants:
  buatfilm:
    backend: v1
    hosts: [buatfilm.agentbar.ai]
  demo:
    backend: v2
"""
# Demo-only sandbox keys, known to the fake Midtrans and nothing else.
KEYS = {"buatfilm": "SB-Mid-server-DEMO-buatfilm-0001", "demo": "SB-Mid-server-DEMO-demo-0002"}


@dataclass(frozen=True)
class Ports:
    router: int
    admin: int
    v1: int = 3002
    v2: int = 3010
    midtrans: int = 3900

    def items(self) -> list[tuple[str, int]]:
        return [("router", self.router), ("admin", self.admin), ("v1", self.v1), ("v2", self.v2),
                ("fake Midtrans", self.midtrans)]


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both stop the demo cleanly, even when started with SIGINT ignored
    (as a background job of a script is)."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def _embedded_postgres(state: Path) -> tuple[str, Any]:
    try:
        import pgserver
    except ImportError:
        raise EnvironmentProblem("no DATABASE_URL given and the embedded PostgreSQL is not installed: "
                                 "pip install -e '.[demo]', or set DATABASE_URL to a PostgreSQL admin URL") from None
    server = pgserver.get_server(str(state / "postgres"), cleanup_mode="stop")
    return str(server.get_uri()), server


def run_demo(*, state_dir: str, router_port: int, workers: int, database_url: str | None) -> int:
    state = Path(state_dir).resolve()
    (state / "logs").mkdir(parents=True, exist_ok=True)
    ports = Ports(router=router_port, admin=router_port + 1020)
    busy = [f"{name} port {port}" for name, port in ports.items() if not port_is_free("127.0.0.1", port)]
    if busy:
        raise EnvironmentProblem(", ".join(busy) + " already in use; stop what uses it, or pass --port")
    routing = state / "routing.yaml"
    if not routing.exists():
        routing.write_text(DEMO_ROUTING.format(v1=ports.v1, v2=ports.v2))
    load_config(routing)  # a broken file left from an earlier run is reported before anything starts

    _stop_on_signals()
    embedded = None
    group = ProcessGroup(str(state / "logs"))
    try:
        admin_url = database_url or os.environ.get("DATABASE_URL")
        if not admin_url:
            print("starting the embedded PostgreSQL (first run: a few seconds)...", flush=True)
            admin_url, embedded = _embedded_postgres(state)
        tokens = _prepare_database(admin_url)
        app_url = make_conninfo(admin_url, user=DEFAULT_LAYOUT.app_role)
        _start_services(group, state, routing, ports, workers, app_url)
        print(_guide(routing, ports, state, tokens, _describe(admin_url), app_url, admin_url), flush=True)
        while (exited := group.first_exited()) is None:
            time.sleep(0.5)
        print(f"\n{exited.name} stopped unexpectedly (code {exited.process.returncode}):\n{exited.tail()}",
              file=sys.stderr)
        return 1
    except ProcessFailed as exc:
        print(f"dualstack demo: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("\nstopping (in-flight requests are drained first)...", flush=True)
        return 0
    finally:
        group.stop()
        if embedded is not None:
            embedded.cleanup()


def _prepare_database(admin_url: str) -> dict[str, str]:
    migrate(admin_url)
    state = DatabaseLayout(schema=STATE_SCHEMA, owner_role=DEFAULT_LAYOUT.owner_role,
                           app_role=DEFAULT_LAYOUT.app_role)
    migrate(admin_url, state, migrations=bundled_migrations("state_migrations"))
    admin = TenantAdmin(admin_url)
    tokens = {}
    for slug, plan in (("buatfilm", "pro"), ("demo", "starter")):
        try:
            tokens[slug] = admin.add(NewTenant(slug, slug.title(), plan, KEYS[slug], "sandbox",
                                               email_from=f"{slug}@agentbar.ai"))
        except TenantError:  # kept from an earlier run: give it a fresh token to show
            tokens[slug] = admin.rotate_admin_token(slug)
    return tokens


def _start_services(group: ProcessGroup, state: Path, routing: Path, ports: Ports, workers: int,
                    app_url: str) -> None:
    python = sys.executable
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    fake = f"http://127.0.0.1:{ports.midtrans}"
    router = f"http://127.0.0.1:{ports.router}"
    midtrans = group.start("fake-midtrans", [
        python, "-m", "standins.midtrans", "--listen", f"127.0.0.1:{ports.midtrans}",
        *[arg for key in KEYS.values() for arg in ("--server-key", key)]], env)
    group.wait_http_ok(midtrans, f"{fake}/_fake/transactions")
    v1 = group.start("legacy-v1", [
        python, "-m", "standins.legacy_v1", "--sqlite", str(state / "orders.db"),
        "--listen", f"127.0.0.1:{ports.v1}", "--snap-url", f"{fake}/sandbox/snap/v1/transactions",
        "--notification-url", f"{router}/webhooks/midtrans?tenant=buatfilm"],
        dict(env, MIDTRANS_SERVER_KEY=KEYS["buatfilm"]))
    group.wait_http_ok(v1, f"http://127.0.0.1:{ports.v1}/health")
    v2 = group.start("v2", [
        python, "-m", "proxy.v2", "--listen", f"127.0.0.1:{ports.v2}", "--workers", str(workers),
        "--routing", str(routing),
        "--notification-url-template", f"{router}/webhooks/midtrans?tenant={{slug}}",
        "--snap-url-sandbox", f"{fake}/sandbox/snap/v1/transactions",
        "--snap-url-production", f"{fake}/production/snap/v1/transactions"],
        dict(env, DUALSTACK_DATABASE_URL=app_url))
    group.wait_http_ok(v2, f"http://127.0.0.1:{ports.v2}/health")
    proxy = group.start("router", [
        python, "-m", "proxy", "--config", str(routing), "--listen", f"127.0.0.1:{ports.router}",
        "--admin-listen", f"127.0.0.1:{ports.admin}", "--workers", str(workers)],
        dict(env, DUALSTACK_STATE_DATABASE_URL=app_url))
    group.wait_http_ok(proxy, f"http://127.0.0.1:{ports.admin}/readyz")
    # The go/no-go decider, reading the router's own metrics (no Prometheus in the demo).
    group.start("decider", [
        python, "-m", "controlplane", "rollout", "decide", "--config", str(routing), "--interval", "30",
        "--metrics-url", f"http://127.0.0.1:{ports.admin}/metrics"], dict(env, DUALSTACK_STATE_DATABASE_URL=app_url))


def _describe(url: str) -> str:
    parts = conninfo_to_dict(url)
    return f"PostgreSQL {parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


def _guide(routing: Path, ports: Ports, state: Path, tokens: dict[str, str], database: str, app_url: str,
           admin_url: str) -> str:
    r = f"http://127.0.0.1:{ports.router}"
    # A URL with a password is never printed: the user knows their own.
    admin = "'<your DATABASE_URL>'" if conninfo_to_dict(admin_url).get("password") else f"'{admin_url}'"
    order = json.dumps({"orderId": "DEMO-1001", "amount": 150000, "email": "budi@example.com",
                        "phone": "08123456789", "name": "Budi", "paymentMethod": "bca"})
    return f"""
dualstack demo is running. Ctrl-C stops everything.

  router         {r}   (2 workers)        admin http://127.0.0.1:{ports.admin}/routes  /metrics
  v1 stand-in    http://127.0.0.1:{ports.v1}   (legacy API on SQLite: {state / 'orders.db'})
  v2             http://127.0.0.1:{ports.v2}   (2 workers, {database}, schema payments)
  fake Midtrans  http://127.0.0.1:{ports.midtrans}   (Snap and signed notifications; no internet needed)
  routing file   {routing}    (buatfilm -> v1, demo -> v2)
  logs           {state / 'logs'}

Pay for an order on the v2 tenant, through the router:
  curl -s -X POST {r}/payment/create -H 'Host: demo.agentbar.ai' -H 'Content-Type: application/json' \\
       -d '{order}'
  curl -s -X POST http://127.0.0.1:{ports.midtrans}/_fake/notify -d '{{"order_id": "DEMO-1001"}}'
  curl -s {r}/orders/DEMO-1001/status -H 'Host: demo.agentbar.ai'
  curl -s {r}/admin/stats -H 'Host: demo.agentbar.ai' -H 'Authorization: Bearer {tokens["demo"]}'

The same on the v1 tenant (buatfilm.agentbar.ai): the router sends it to the v1 stand-in.
Try a duplicate notification ("repeat": 3), an out-of-order one ("sequence": ["settlement", "pending"]),
or a forged one ("forge": true) on /_fake/notify.

Move buatfilm to v2 the guarded way: preflight checks, a final sync of v1's orders, the flip in
{routing.name}, the router confirming, a catch-up sync, and the soak the decider (every 30 s, log:
{state / 'logs' / 'decider.log'}) watches. Then back:
  export DUALSTACK_STATE_DATABASE_URL='{app_url}' DUALSTACK_DATABASE_URL='{app_url}'
  export DUALSTACK_ADMIN_URL={admin}
  dualstack cutover buatfilm --to v2 --config {routing} --sqlite {state / 'orders.db'} \\
      --router-admin-url http://127.0.0.1:{ports.admin} --no-nginx
  dualstack rollout status --config {routing}
  dualstack rollout explain buatfilm
  dualstack rollout rollback buatfilm --config {routing} --reason "trying it"   # then: rollout ack buatfilm
  dualstack cutover buatfilm --to v1 --config {routing} --router-admin-url http://127.0.0.1:{ports.admin} --no-nginx
Orders created on either side stay readable and payable through the router across both moves
(`X-Dualstack-Backend` in each answer says which backend served it).
"""

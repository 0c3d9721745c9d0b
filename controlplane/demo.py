"""`dualstack demo`: the whole stack on embedded defaults, stopped cleanly with Ctrl-C.

PostgreSQL (DATABASE_URL, else an embedded server from the pgserver package under the state
folder), migrations, two tenants (buatfilm on v1, demo on v2), the fake Midtrans, the legacy v1
stand-in (its PostgreSQL generation, as production runs it: `payment_orders` in the schema
legacy_v1), v2 (2 workers) and the router (2 workers), all on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from controlplane.config import load_config
from controlplane.db.layout import DEFAULT_LAYOUT, DatabaseLayout
from controlplane.db.migrate import bundled_migrations, migrate
from controlplane.db.tenants import NewTenant, TenantAdmin, TenantError
from controlplane.errors import EnvironmentProblem, UsageProblem
from controlplane.invocation import command_path
from controlplane.processes import ProcessFailed, ProcessGroup, port_is_free
from controlplane.state.schema import STATE_SCHEMA

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
# `dualstack cutover` normally wants a day of shadow evidence first; the demo has minutes of it.
cutover: {{min_comparisons: 0}}
tenants:
  buatfilm:
    backend: v1
    hosts: [buatfilm.agentbar.ai]
    # Every read is mirrored to v2, which the demo keeps in step with v1's orders (migrate --follow):
    # `dualstack shadow report --tenant buatfilm` compares the two answers.
    shadow: {{sample_rate: 1.0, routes: [read]}}
  demo:
    backend: v2
"""
V1_SCHEMA = "legacy_v1"
# Demo-only sandbox keys, known to the fake Midtrans and nothing else.
KEYS = {"buatfilm": "SB-Mid-server-DEMO-buatfilm-0001", "demo": "SB-Mid-server-DEMO-demo-0002"}


@dataclass(frozen=True)
class RoleUrls:
    """One login role per program: v2 (and the v1 sync), the router, the decider and the CLI."""

    app: str
    router: str
    control: str
    v1: str  # the v1 stand-in's own tables (schema legacy_v1), as a URL without its password

    @classmethod
    def of(cls, admin_url: str) -> RoleUrls:
        app, router, control = (make_conninfo(admin_url, user=role) for role in (
            DEFAULT_LAYOUT.app_role, DEFAULT_LAYOUT.router_role, DEFAULT_LAYOUT.control_role))
        return cls(app, router, control, _v1_url(admin_url))


def _v1_url(admin_url: str) -> str:
    """`postgresql:///DB?host=..&options=-c search_path=legacy_v1` (a URL is what `--from` takes; the
    password, if any, reaches the programs as PGPASSWORD and is never printed)."""
    info = {k: str(v) for k, v in conninfo_to_dict(admin_url).items() if k not in ("dbname", "password")}
    query = urllib.parse.urlencode({**info, "options": f"-c search_path={V1_SCHEMA}"}, quote_via=urllib.parse.quote)
    return f"postgresql:///{urllib.parse.quote(str(conninfo_to_dict(admin_url).get('dbname', '')))}?{query}"


@dataclass(frozen=True)
class Ports:
    """The production defaults, or six consecutive ports from --port-base (to run beside a real v1)."""

    router: int = 8080
    admin: int = 9100
    v1: int = 3002
    v2: int = 3010
    midtrans: int = 3900
    v2_metrics: int = 3011

    @classmethod
    def from_base(cls, base: int | None) -> Ports:
        if base is None:
            return cls()
        if not 1024 <= base <= 65530:
            raise UsageProblem(f"--port-base {base}: choose a port from 1024 to 65530 (it uses six in a row)")
        return cls(router=base, admin=base + 1, v1=base + 2, v2=base + 3, midtrans=base + 4, v2_metrics=base + 5)

    def items(self) -> list[tuple[str, int]]:
        return [("router", self.router), ("admin", self.admin), ("v1", self.v1), ("v2", self.v2),
                ("fake Midtrans", self.midtrans), ("v2 metrics", self.v2_metrics)]


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both stop the demo cleanly, even when started with SIGINT ignored
    (as a background job of a script is)."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def _point_at(routing: Path, ports: Ports) -> None:
    """Make the upstream URLs of a kept routing file name this run's ports, changing nothing else."""
    config = load_config(routing)  # a broken file left from an earlier run is reported before anything starts
    text = routing.read_text()
    for old, port in ((config.upstreams["v1"].url, ports.v1), (config.upstreams["v2"].url, ports.v2)):
        new = f"http://127.0.0.1:{port}"
        if old != new:
            text = text.replace(f'"{old}"', f'"{new}"')
    if text != routing.read_text():
        routing.write_text(text)
        load_config(routing)


def _embedded_postgres(state: Path) -> tuple[str, Any]:
    try:
        import pgserver
    except ImportError:
        raise EnvironmentProblem("no DATABASE_URL given and the embedded PostgreSQL is not installed: "
                                 "pip install -e '.[demo]', or set DATABASE_URL to a PostgreSQL admin URL") from None
    server = pgserver.get_server(str(state / "postgres"), cleanup_mode="stop")
    return str(server.get_uri()), server


def run_demo(*, state_dir: str, port_base: int | None, workers: int, database_url: str | None) -> int:
    state = Path(state_dir).resolve()
    (state / "logs").mkdir(parents=True, exist_ok=True)
    ports = Ports.from_base(port_base)
    busy = [f"{name} port {port}" for name, port in ports.items() if not port_is_free("127.0.0.1", port)]
    if busy:
        raise EnvironmentProblem(", ".join(busy) + " already in use; stop what uses it, or pass --port-base N "
                                 "to move all five (router N, admin N+1, v1 N+2, v2 N+3, fake Midtrans N+4)")
    routing = state / "routing.yaml"
    if not routing.exists():
        routing.write_text(DEMO_ROUTING.format(v1=ports.v1, v2=ports.v2))
    _point_at(routing, ports)  # kept from an earlier run, perhaps on other ports: keep its edits

    _stop_on_signals()
    embedded = None
    group = ProcessGroup(str(state / "logs"))
    try:
        admin_url = database_url or os.environ.get("DATABASE_URL")
        if not admin_url:
            print("starting the embedded PostgreSQL (first run: a few seconds)...", flush=True)
            admin_url, embedded = _embedded_postgres(state)
        tokens = _prepare_database(admin_url)
        urls = RoleUrls.of(admin_url)
        _start_services(group, state, routing, ports, workers, urls)
        print(_guide(routing, ports, state, tokens, _describe(admin_url), urls, admin_url), flush=True)
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
    with psycopg.connect(admin_url, autocommit=True) as conn:  # v1 creates its payment_orders there
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {V1_SCHEMA}")
    migrate(admin_url, DatabaseLayout(schema=STATE_SCHEMA), migrations=bundled_migrations("controlplane.state"))
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
                    urls: RoleUrls) -> None:
    python = sys.executable
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    password = conninfo_to_dict(urls.app).get("password")
    v1_env = dict(env, DATABASE_URL=urls.v1, **({"PGPASSWORD": str(password)} if password else {}))
    fake = f"http://127.0.0.1:{ports.midtrans}"
    router = f"http://127.0.0.1:{ports.router}"
    # The tenants' Midtrans keys, in a file only this user reads (never on a command line, which `ps` shows):
    # the fake Midtrans signs with them, the router verifies notifications with them.
    keys_file = state / "midtrans.keys"
    keys_file.touch(0o600)
    keys_file.chmod(0o600)
    keys_file.write_text("".join(f"{slug}={key}\n" for slug, key in KEYS.items()))
    midtrans = group.start("fake-midtrans", [
        python, "-m", "standins.midtrans", "--listen", f"127.0.0.1:{ports.midtrans}",
        "--server-keys-file", str(keys_file)], env)
    group.wait_http_ok(midtrans, f"{fake}/_fake/transactions")
    v1 = group.start("legacy-v1", [
        python, "-m", "standins.legacy_v1", "--store", "postgresql",
        "--listen", f"127.0.0.1:{ports.v1}", "--snap-url", f"{fake}/sandbox/snap/v1/transactions",
        "--notification-url", f"{router}/webhooks/midtrans?tenant=buatfilm"],
        dict(v1_env, MIDTRANS_SERVER_KEY=KEYS["buatfilm"]))
    group.wait_http_ok(v1, f"http://127.0.0.1:{ports.v1}/health")
    v2 = group.start("v2", [
        python, "-m", "proxy.v2", "--listen", f"127.0.0.1:{ports.v2}", "--workers", str(workers),
        "--routing", str(routing),
        "--notification-url-template", f"{router}/webhooks/midtrans?tenant={{slug}}",
        "--snap-url-sandbox", f"{fake}/sandbox/snap/v1/transactions",
        "--snap-url-production", f"{fake}/production/snap/v1/transactions",
        "--core-url-sandbox", f"{fake}/sandbox", "--core-url-production", f"{fake}/production",
        "--metrics-listen", f"127.0.0.1:{ports.v2_metrics}"],
        dict(env, DUALSTACK_DATABASE_URL=urls.app))
    group.wait_http_ok(v2, f"http://127.0.0.1:{ports.v2}/health")
    # v1's new and changed orders reach v2 every 5 s, as `dualstack-migrate-follow@buatfilm` does.
    group.start("migrate-follow", [
        python, "-m", "controlplane", "migrate", "--from", urls.v1, "--follow", "--interval", "5",
        "--tenant", "buatfilm",
        "--core-url-sandbox", f"{fake}/sandbox", "--core-url-production", f"{fake}/production"],
        dict(v1_env, DUALSTACK_DATABASE_URL=urls.app))
    # The router verifies notifications itself, with the tenants' keys from that file.
    proxy = group.start("router", [
        python, "-m", "proxy.router", "--config", str(routing), "--listen", f"127.0.0.1:{ports.router}",
        "--admin-listen", f"127.0.0.1:{ports.admin}", "--workers", str(workers)],
        dict(env, DUALSTACK_STATE_DATABASE_URL=urls.router, DUALSTACK_MIDTRANS_KEYS_FILE=str(keys_file)))
    group.wait_http_ok(proxy, f"http://127.0.0.1:{ports.admin}/readyz")
    # The go/no-go decider, reading the router's own metrics (no Prometheus in the demo).
    group.start("decider", [
        python, "-m", "controlplane", "rollout", "decide", "--config", str(routing), "--interval", "30",
        "--metrics-url", f"http://127.0.0.1:{ports.admin}/metrics"],
        dict(env, DUALSTACK_STATE_DATABASE_URL=urls.control))


def _describe(url: str) -> str:
    parts = conninfo_to_dict(url)
    host, dbname = str(parts.get("host", "localhost")), parts.get("dbname", "")
    if host.startswith("/"):  # a socket folder (the embedded server listens on no TCP port)
        return f"PostgreSQL on the socket in {host}, database {dbname}"
    return f"PostgreSQL {host}:{parts.get('port', 5432)}/{dbname}"


def _guide(routing: Path, ports: Ports, state: Path, tokens: dict[str, str], database: str, urls: RoleUrls,
           admin_url: str) -> str:
    r = f"http://127.0.0.1:{ports.router}"
    # A URL with a password is never printed: the user knows their own.
    admin = "'<your DATABASE_URL>'" if conninfo_to_dict(admin_url).get("password") else f"'{admin_url}'"
    run_id = int(time.time())  # order ids of this run only: the printed commands work again on the next run
    v2_order, v1_order = f"DEMO-{run_id}", f"BF-{run_id}"
    order = json.dumps({"orderId": v2_order, "amount": 150000, "email": "budi@example.com",
                        "phone": "08123456789", "name": "Budi", "paymentMethod": "bca"})
    v1_body = json.dumps({"orderId": v1_order, "amount": 99000, "email": "sari@example.com",
                          "phone": "08129876543", "name": "Sari", "paymentMethod": "gopay"})
    dualstack = command_path()
    return f"""
dualstack demo is running. Ctrl-C stops everything.

  router         {r}   (2 workers)        admin http://127.0.0.1:{ports.admin}/routes  /metrics
  v1 stand-in    http://127.0.0.1:{ports.v1}   (legacy API, PostgreSQL generation: {V1_SCHEMA}.payment_orders;
                 faithful to v1: no signature check, `paid` in lower case, the amount as a string)
  v2             http://127.0.0.1:{ports.v2}   (2 workers, {database}, schema payments)
                 metrics http://127.0.0.1:{ports.v2_metrics}/metrics
  fake Midtrans  http://127.0.0.1:{ports.midtrans}   (Snap and signed notifications; no internet needed)
  routing file   {routing}    (buatfilm -> v1, demo -> v2)
  logs           {state / 'logs'}

Pay for an order on the v2 tenant, through the router:
  curl -s -X POST {r}/payment/create -H 'Host: demo.agentbar.ai' -H 'Content-Type: application/json' \\
       -d '{order}'
  curl -s -X POST http://127.0.0.1:{ports.midtrans}/_fake/notify -d '{{"order_id": "{v2_order}"}}'
  curl -s {r}/orders/{v2_order}/status -H 'Host: demo.agentbar.ai'
  curl -s {r}/admin/stats -H 'Host: demo.agentbar.ai' -H 'Authorization: Bearer {tokens["demo"]}'

The same on the v1 tenant: the router sends buatfilm to the v1 stand-in, and mirrors its reads to v2:
  curl -s -X POST {r}/payment/create -H 'Host: buatfilm.agentbar.ai' -H 'Content-Type: application/json' \\
       -d '{v1_body}'
  curl -s -X POST http://127.0.0.1:{ports.midtrans}/_fake/notify -d '{{"order_id": "{v1_order}"}}'
  curl -s {r}/orders/{v1_order}/status -H 'Host: buatfilm.agentbar.ai'
  {dualstack} shadow report --tenant buatfilm --since 1h --format md --out - --state-database-url '{urls.control}'
Try a duplicate notification ("repeat": 3), an out-of-order one ("sequence": ["settlement", "pending"]),
or a forged one ("forge": true) on /_fake/notify: the router refuses it (403) before any backend sees it.

Move buatfilm to v2 the guarded way: preflight checks, a bulk sync of v1's orders, the router holding
buatfilm's writes for the final sync and the flip in {routing.name}, the router confirming, and the
soak the decider (every 30 s, log:
{state / 'logs' / 'decider.log'}) watches. While buatfilm is on v2, keep the reverse sync running in a
terminal of its own (with the exports below): it copies what v2 takes into v1, so the way back loses
nothing (the demo already runs the v1 -> v2 sync, `migrate --follow`). Then back:
  export DUALSTACK_STATE_DATABASE_URL='{urls.control}' DUALSTACK_DATABASE_URL='{urls.app}'
  export DUALSTACK_ADMIN_URL={admin}
  export DUALSTACK_MIDTRANS_CORE_URL_SANDBOX=http://127.0.0.1:{ports.midtrans}/sandbox DUALSTACK_MIDTRANS_CORE_URL_PRODUCTION=http://127.0.0.1:{ports.midtrans}/production
  {dualstack} cutover buatfilm --to v2 --config {routing} --from '{urls.v1}' \\
      --router-admin-url http://127.0.0.1:{ports.admin} --no-nginx
  {dualstack} reverse-sync --from '{urls.v1}' --tenant buatfilm --follow   # v2 -> v1, own terminal
  {dualstack} rollout status --config {routing}
  {dualstack} rollout explain buatfilm
  {dualstack} rollout rollback buatfilm --config {routing} --reason "trying it"   # then: rollout ack buatfilm
  {dualstack} cutover buatfilm --to v1 --config {routing} --from '{urls.v1}' \\
      --router-admin-url http://127.0.0.1:{ports.admin} --no-nginx
Orders created on either side stay readable and payable through the router across both moves
(`X-Dualstack-Backend` in each answer says which backend served it).
"""

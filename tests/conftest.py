"""Shared fixtures: real upstream servers on loopback and a router built by the real composition root."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import textwrap
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from controlplane.config.model import SLUG_RE
from proxy.router.app import create_apps
from proxy.router.notification_keys import FileKeyStore
from proxy.serving.signature import notification_signature

REPO = Path(__file__).resolve().parent.parent

# Fixtures more than one test folder uses (a v2 stack for the control plane's reconcile and cutover
# tests as well as v2's own): helpers and types are imported from these modules, never from a test.
pytest_plugins = ["tests.fixtures.watchdog", "tests.fixtures.smtp_relay", "tests.fixtures.v2_stack",
                  "tests.fixtures.cutover_world"]


@dataclass
class Seen:
    method: str
    path_qs: str
    raw_path: str
    headers: dict[str, str]
    body_bytes: int


@dataclass
class Upstream:
    """A real aiohttp server standing in for a backend; records every request it receives."""

    name: str
    server: TestServer
    seen: list[Seen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


def echo_app(name: str, seen: list[Seen]) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
        seen.append(Seen(request.method, request.path_qs, request.raw_path, dict(request.headers), size))
        return web.json_response({"backend": name, "tenant": request.headers.get("X-Tenant-Slug")},
                                 headers={"X-Request-ID": "upstream-must-not-win",
                                          "X-Dualstack-Backend": "spoofed", "Connection": "keep-alive"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@pytest.fixture
async def upstreams(aiohttp_server: Any) -> dict[str, Upstream]:
    out = {}
    for name in ("v1", "v2"):
        seen: list[Seen] = []
        server = await aiohttp_server(echo_app(name, seen))
        out[name] = Upstream(name, server, seen)
    return out


def routing_yaml(v1: str, v2: str, tenants: str, *, trusted: str = '["127.0.0.1/32", "::1/128"]',
                 timeouts: str = "", v1_tenants: list[str] | None = None) -> str:
    """A routing file for tests. The test's v1 stands in for a v1 that holds every tenant of the file
    (declared in upstreams.v1.tenants, so any may be flipped or rolled back to it) unless told whom."""
    if v1_tenants is None:
        parsed = yaml.safe_load(textwrap.dedent(tenants)) or {}
        v1_tenants = sorted(str(slug) for slug in parsed) if isinstance(parsed, dict) else []
    held = f", tenants: [{', '.join(v1_tenants)}]" if v1_tenants else ""
    return textwrap.dedent(f"""\
        upstreams:
          v1: {{url: "{v1}"{timeouts}{held}}}
          v2: {{url: "{v2}"{timeouts}}}
        base_domain: agentbar.ai
        platform_subdomains: [funnel, funnelstaging, www, admin]
        trusted_proxies: {trusted}
        tenants:
        """) + textwrap.indent(textwrap.dedent(tenants), "  ")


DEFAULT_TENANTS = """\
buatfilm:
  backend: v1
  hosts: [buatfilm.agentbar.ai, shop.example.com]
demo:
  backend: v2
"""


@dataclass
class Router:
    server: TestServer
    admin: TestServer
    app: web.Application
    registry: CollectorRegistry
    config_path: Path

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def sample(self, name: str, **labels: str) -> float:
        """The sum over every series of `name` whose labels include these (so a test need not name
        labels it is not about, such as a request's route class)."""
        return sum(s.value for metric in self.registry.collect() for s in metric.samples
                   if s.name == name and labels.items() <= s.labels.items())


RouterFactory = Callable[..., Awaitable[Router]]

# Every tenant's Midtrans server key in a router make_router starts (unless the test gives its own keys).
TEST_SERVER_KEY: Final = "SB-Mid-server-TEST-0000"
EVERY_TENANT: Final = "every tenant of the file, with TEST_SERVER_KEY"


def signed(payload: Mapping[str, Any], key: str = TEST_SERVER_KEY) -> dict[str, Any]:
    """A Midtrans notification, signed as Midtrans signs it."""
    return {**payload, "signature_key": notification_signature(
        str(payload["order_id"]), str(payload["status_code"]), str(payload["gross_amount"]), key)}


def keys_file(path: Path, keys: Mapping[str, str]) -> Path:
    """A router's keys file (`slug=key` lines, readable by its owner only)."""
    path.write_text("".join(f"{slug}={key}\n" for slug, key in keys.items()))
    path.chmod(0o600)
    return path


def _slugs(yaml_text: str) -> list[str]:
    try:
        tenants = (yaml.safe_load(yaml_text) or {}).get("tenants")
    except (yaml.YAMLError, AttributeError):
        return []
    return [str(s) for s in tenants if SLUG_RE.fullmatch(str(s))] if isinstance(tenants, dict) else []


@pytest.fixture
async def make_router(aiohttp_server: Any, tmp_path: Path) -> RouterFactory:
    async def make(yaml_text: str, *, state_database_url: str | None = None, lock_poll_s: float = 0.1,
                   notification_keys: Any = EVERY_TENANT, **server_kwargs: Any) -> Router:
        """`notification_keys`: the router's key source (None: none, and it refuses every notification)."""
        config_path = tmp_path / "routing.yaml"
        config_path.write_text(yaml_text)
        if notification_keys == EVERY_TENANT:
            keys = keys_file(tmp_path / "midtrans.keys", dict.fromkeys(_slugs(yaml_text), TEST_SERVER_KEY))
            notification_keys = FileKeyStore.load(keys)
        registry = CollectorRegistry()
        app, admin_app = create_apps(config_path, registry, reload_interval_s=0.05,
                                     state_database_url=state_database_url, lock_poll_s=lock_poll_s,
                                     shadow_flush_s=0.02, notification_keys=notification_keys)
        server = await aiohttp_server(app, **server_kwargs)
        admin = await aiohttp_server(admin_app)
        return Router(server, admin, app, registry, config_path)

    return make


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll a condition (never a timing assertion: the bound only stops a broken test hanging)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


# -- PostgreSQL: one database and one pair of roles per test session, dropped afterwards ----------

import secrets as _secrets  # noqa: E402

import psycopg  # noqa: E402
from psycopg.conninfo import make_conninfo  # noqa: E402

from controlplane.db.layout import DatabaseLayout  # noqa: E402
from controlplane.db.migrate import migrate  # noqa: E402
from tests.fixtures.postgres_server import SERVER_URL  # noqa: E402


@dataclass(frozen=True)
class Database:
    admin_url: str  # superuser, for setup and for checks no tenant could make
    app_url: str  # the application role: what v2 connects as
    layout: DatabaseLayout
    router_url: str = ""  # the router's role: payments: may only call notification_key(slug); state: no lock writes
    control_url: str = ""  # state: the decider's and the CLI's role (writes locks and events)


def _drop(name: str, layout: DatabaseLayout) -> None:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in (layout.app_role, layout.router_role, layout.control_role, layout.owner_role):
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture(scope="session")
def database() -> Any:
    suffix = _secrets.token_hex(4)
    name = f"dualstack_test_{suffix}"
    layout = DatabaseLayout(schema="payments", owner_role=f"ds_{suffix}_owner", app_role=f"ds_{suffix}_app",
                            router_role=f"ds_{suffix}_router", control_role=f"ds_{suffix}_control")
    try:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise RuntimeError(f"the tests need PostgreSQL at {SERVER_URL} (set DUALSTACK_TEST_ADMIN_URL): "
                           f"{exc}") from exc
    admin_url = make_conninfo(SERVER_URL, dbname=name)
    try:
        migrate(admin_url, layout)
        yield Database(admin_url, make_conninfo(admin_url, user=layout.app_role), layout,
                       make_conninfo(admin_url, user=layout.router_role),
                       make_conninfo(admin_url, user=layout.control_role))
    finally:
        _drop(name, layout)


@pytest.fixture(scope="session")
def state(database: Database) -> Database:
    """The control plane's state schema (shadow results, rollouts, locks) in the session's database."""
    import dataclasses

    from controlplane.db.migrate import bundled_migrations
    from controlplane.state.schema import STATE_SCHEMA

    layout = dataclasses.replace(database.layout, schema=STATE_SCHEMA)
    migrate(database.admin_url, layout, migrations=bundled_migrations("controlplane.state"))
    return dataclasses.replace(database, layout=layout)


# -- a real Prometheus on loopback, scraping given targets with the project's rules loaded -------

import shutil as _shutil  # noqa: E402
import subprocess as _subprocess  # noqa: E402

import aiohttp as _aiohttp  # noqa: E402


@pytest.fixture
async def prometheus(tmp_path: Path) -> Any:
    processes: list[_subprocess.Popen[str]] = []

    async def start(targets: list[str]) -> str:
        if _shutil.which("prometheus") is None:
            pytest.skip("prometheus is not installed")

        port = free_port()
        config = tmp_path / "prometheus.yml"
        rules = REPO / "configs" / "prometheus" / "dualstack.rules.yml"
        config.write_text(textwrap.dedent(f"""\
            global: {{scrape_interval: 1s, evaluation_interval: 1s}}
            rule_files: ["{rules}"]
            scrape_configs:
              - job_name: dualstack-router
                static_configs: [{{targets: {targets!r}}}]
            """).replace("'", '"'))
        process = _subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=_subprocess.DEVNULL, stderr=_subprocess.DEVNULL,
            text=True)
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        async with _aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(f"{base}/-/ready") as response:
                        if response.status == 200:
                            return base
                except _aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("prometheus did not start")

    yield start
    for process in processes:
        process.terminate()
        process.communicate(timeout=20)


# -- small helpers several test modules use ---------------------------------------------------

def free_port() -> int:
    """A loopback port nothing listens on now (for helpers; a test asks for the fixture)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    """`free_port()` in a test: a fresh free loopback port each call."""
    return free_port


def shadow_config(v1: str, v2: str, shadow: str, *, backend: str = "v1", limits: str = "") -> str:
    return textwrap.dedent(f"""\
        upstreams:
          v1: {{url: "{v1}", tenants: [shop]}}
          v2: {{url: "{v2}"}}
        base_domain: agentbar.ai
        {limits}
        tenants:
          shop:
            backend: {backend}
            shadow: {shadow}
        """)


async def start_pair(aiohttp_server: Any, primary: web.Application, shadow: web.Application) -> tuple[str, str]:
    p, s = await aiohttp_server(primary), await aiohttp_server(shadow)
    return str(p.make_url("")).rstrip("/"), str(s.make_url("")).rstrip("/")


def tenant_app(name: str, failing: str | None = None) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        if request.headers.get("X-Tenant-Slug") == failing:
            return web.json_response({"error": "boom"}, status=500)
        return web.json_response({"backend": name})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


async def tenant_traffic(router_url: str, tenant: str, n: int) -> list[int]:
    async with aiohttp.ClientSession() as session:
        async def one() -> int:
            async with session.get(f"{router_url}/x", headers={"Host": f"{tenant}.agentbar.ai"}) as response:
                return response.status

        return list(await asyncio.gather(*(one() for _ in range(n))))


@pytest.fixture
def empty_database() -> Any:
    """A real database of its own with no schema at all: what a newcomer's first command meets. A
    command that migrates it with the default role names creates roles, which outlive the database:
    those that did not exist before are dropped after it."""
    name = f"dualstack_empty_{_secrets.token_hex(4)}"
    layout = DatabaseLayout()
    roles = [*layout.login_roles().values(), layout.owner_role]
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        existing = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (roles,))}
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(SERVER_URL, dbname=name)
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in roles:
                if role not in existing:
                    conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@contextlib.contextmanager
def fifo_unblocker(path: Path, after_s: float = 3.0) -> Iterator[None]:
    """Should a reader block on the FIFO, a writer opens and closes it after `after_s`, so a broken
    build fails its assertion instead of hanging the run."""
    done = threading.Event()

    def unblock() -> None:
        if not done.wait(after_s):
            with open(path, "wb"):
                pass

    thread = threading.Thread(target=unblock, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()

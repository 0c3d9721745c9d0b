"""Shared fixtures: real upstream servers on loopback and a router built by the real composition root."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from proxy.app import create_apps

REPO = Path(__file__).resolve().parent.parent


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
                 timeouts: str = "") -> str:
    return textwrap.dedent(f"""\
        upstreams:
          v1: {{url: "{v1}"{timeouts}}}
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
        return self.registry.get_sample_value(name, labels) or 0.0


RouterFactory = Callable[..., Awaitable[Router]]


@pytest.fixture
async def make_router(aiohttp_server: Any, tmp_path: Path) -> RouterFactory:
    async def make(yaml_text: str, *, state_database_url: str | None = None, lock_poll_s: float = 0.1,
                   **server_kwargs: Any) -> Router:
        config_path = tmp_path / "routing.yaml"
        config_path.write_text(yaml_text)
        registry = CollectorRegistry()
        app, admin_app = create_apps(config_path, registry, reload_interval_s=0.05,
                                     state_database_url=state_database_url, lock_poll_s=lock_poll_s,
                                     shadow_flush_s=0.02)
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

import os  # noqa: E402
import secrets as _secrets  # noqa: E402

import psycopg  # noqa: E402
from psycopg.conninfo import make_conninfo  # noqa: E402

from controlplane.db.layout import DatabaseLayout  # noqa: E402
from controlplane.db.migrate import migrate  # noqa: E402

SERVER_URL = os.environ.get("DUALSTACK_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class Database:
    admin_url: str  # superuser, for setup and for checks no tenant could make
    app_url: str  # the application role: what v2 connects as
    layout: DatabaseLayout


def _drop(name: str, layout: DatabaseLayout) -> None:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in (layout.app_role, layout.owner_role):
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture(scope="session")
def database() -> Any:
    suffix = _secrets.token_hex(4)
    name = f"dualstack_test_{suffix}"
    layout = DatabaseLayout(schema="payments", owner_role=f"ds_{suffix}_owner", app_role=f"ds_{suffix}_app")
    try:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise RuntimeError(f"the tests need PostgreSQL at {SERVER_URL} (set DUALSTACK_TEST_ADMIN_URL): "
                           f"{exc}") from exc
    admin_url = make_conninfo(SERVER_URL, dbname=name)
    try:
        migrate(admin_url, layout)
        yield Database(admin_url, make_conninfo(admin_url, user=layout.app_role), layout)
    finally:
        _drop(name, layout)


@pytest.fixture(scope="session")
def state(database: Database) -> Database:
    """The control plane's state schema (shadow results, rollouts, locks) in the session's database."""
    import dataclasses

    from controlplane.db.migrate import bundled_migrations
    from controlplane.shadow.samples import STATE_SCHEMA

    layout = dataclasses.replace(database.layout, schema=STATE_SCHEMA)
    migrate(database.admin_url, layout, migrations=bundled_migrations("state_migrations"))
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
        from tests.proxy.test_forward import free_port

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

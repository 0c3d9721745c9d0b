"""What status does with a source that misbehaves: it says why, within its time bound, and reads the rest."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from controlplane.status.gather import Unreadable, database_name, fetch_json, public_url, read_routes, read_state
from controlplane.status.readings import SourceKind
from tests.conftest import routing_yaml


async def test_a_router_that_never_answers_is_given_up_within_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(Unreadable, match=r"/routes: no answer within 0.3 s"):
            await asyncio.to_thread(read_routes, url, 0.3)


async def test_answers_that_are_not_a_routes_view_are_named(aiohttp_server: Any) -> None:
    async def huge(_: web.Request) -> web.Response:
        return web.Response(body=b"[" + b"0," * 600_000 + b"0]", content_type="application/json")

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/routes", page)
    app.router.add_get("/big", huge)
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    with pytest.raises(Unreadable, match=r"^/routes: the answer is not JSON$"):
        await asyncio.to_thread(read_routes, base, 2.0)
    with pytest.raises(Unreadable, match=r"^/nothing/routes: answered HTTP 404$"):
        await asyncio.to_thread(read_routes, base + "/nothing", 2.0)
    with pytest.raises(Unreadable, match=r"^/big: answer larger than 1000000 bytes$"):
        await asyncio.to_thread(fetch_json, base + "/big", 2.0, 1_000_000)


def test_a_state_database_without_the_schema_names_the_fix(empty_database: str) -> None:
    from datetime import UTC, datetime

    with pytest.raises(Unreadable, match=r"schema dualstack_state is missing .* run `dualstack db migrate --target "
                                         r"state`"):
        read_state(empty_database, "dualstack_state", datetime.now(UTC), 3600, 2.0)


def test_where_a_source_is_never_carries_a_secret() -> None:
    assert public_url("http://ops:s3cret@prometheus.internal:9090/prom") == "http://prometheus.internal:9090/prom"
    assert database_name("postgresql://control:s3cret@db.internal:5433/state") == "db.internal:5433/state"


def test_status_says_what_it_could_not_read_and_shows_the_rest(tmp_path: Path, free_port: Any,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from controlplane.cli import ExitStatus, run

    config = tmp_path / "routing.yaml"
    config.write_text(routing_yaml("http://127.0.0.1:3002", "http://127.0.0.1:3010", "shop: {backend: v2}\n"))
    dead = f"http://127.0.0.1:{free_port()}"
    assert run(["status", "--config", str(config), "--state-database-url",
                f"postgresql://nobody:s3cret@127.0.0.1:{free_port()}/state", "--router-admin-url", dead,
                "--timeout-s", "2"]) == ExitStatus.ENVIRONMENT
    out, err = capsys.readouterr()
    assert "steady       shop                   v2   v2?" in out
    assert f"FAILED  {SourceKind.STATE_DATABASE.replace('_', ' ')} 127.0.0.1:" in out and "s3cret" not in out + err
    assert f"FAILED  router {dead}: /routes: connection refused" in out
    assert err.startswith("dualstack: partial: could not read state database 127.0.0.1:") and "Traceback" not in err

"""What the router's tests share: the router as a real process, and an upstream that breaks off a
response mid-body."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

CHUNK = b"x" * (64 * 1024)


class RouterProcess:
    def __init__(self, process: subprocess.Popen[str], port: int, admin_port: int, host: str) -> None:
        self.process = process
        self.url = f"http://{host}:{port}"
        self.admin_url = f"http://127.0.0.1:{admin_port}"

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as session, session.get(f"{self.admin_url}/metrics") as response:
            return await response.text()

    async def sample(self, pattern: str) -> float:
        match = re.search(rf"^{pattern} (\S+)$", await self.metrics(), re.MULTILINE)
        return float(match.group(1)) if match else 0.0


Starter = Callable[..., Any]


@pytest.fixture
async def start_router(tmp_path: Path, free_port: Callable[[], int]) -> AsyncIterator[Starter]:
    """The router as a real process (`python -m proxy.router`), stopped (SIGTERM, then SIGKILL) after the test."""
    started: list[RouterProcess] = []

    async def start(yaml_text: str, *, workers: int = 1, host: str = "127.0.0.1",
                    drain_s: float = 10, args: Sequence[str] = ()) -> RouterProcess:
        config = tmp_path / "routing.yaml"
        config.write_text(yaml_text)
        port, admin_port = free_port(), free_port()
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        process = subprocess.Popen(
            [sys.executable, "-m", "proxy.router", "--config", str(config), "--listen", listen,
             "--admin-listen", f"127.0.0.1:{admin_port}", "--workers", str(workers),
             "--drain-timeout", str(drain_s), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
        router = RouterProcess(process, port, admin_port, f"[{host}]" if ":" in host else host)
        started.append(router)

        async def ready() -> bool:
            try:
                async with aiohttp.ClientSession() as session, session.get(f"{router.admin_url}/readyz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        for _ in range(300):
            assert process.poll() is None, process.communicate()[0]
            if await ready():
                return router
            await asyncio.sleep(0.05)
        raise AssertionError("router did not become ready")

    yield start
    for router in started:
        if router.process.poll() is None:
            router.process.terminate()
        try:
            router.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(router.process.pid, signal.SIGKILL)
            router.process.communicate()


ResetMidBody = Callable[..., Awaitable[str]]


@pytest.fixture
def reset_mid_body(aiohttp_server: Any) -> ResetMidBody:
    """Starts an upstream that answers 200, sends two chunks of a longer body (its length declared
    or not), then resets the connection; returns its URL."""

    async def start(*, declared_length: bool = True) -> str:
        async def half(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse()
            if declared_length:
                response.content_length = 10 * len(CHUNK)
            await response.prepare(request)
            await response.write(CHUNK * 2)
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.abort()
            return response

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", half)
        return str((await aiohttp_server(app)).make_url("")).rstrip("/")

    return start

"""Fixtures the decider's tests share: a webhook, and a real Prometheus serving synthetic history
(OpenMetrics turned into TSDB blocks by `promtool tsdb create-blocks-from openmetrics`)."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

# Decision slices in the decider's tests: seconds, not minutes (the tests cannot wait minutes).
STEP_S = 3


@pytest.fixture
async def webhook(aiohttp_server: Any) -> tuple[str, list[str]]:
    """A Slack-compatible webhook that keeps every text it receives."""
    notes: list[str] = []

    async def capture(request: web.Request) -> web.Response:
        notes.append((await request.json())["text"])
        return web.Response(text="ok")

    hook = web.Application()
    hook.router.add_post("/hook", capture)
    return str((await aiohttp_server(hook)).make_url("/hook")), notes


@pytest.fixture
def prometheus_on(free_port: Callable[[], int], tmp_path: Path) -> Iterator[object]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(openmetrics: str) -> str:
        source, data = tmp_path / "history.om", tmp_path / "data"
        source.write_text(openmetrics)
        made = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
                              capture_output=True, text=True, check=False, timeout=60)
        assert made.returncode == 0, made.stdout + made.stderr
        config = tmp_path / "prometheus.yml"
        config.write_text("global: {scrape_interval: 15s}\n")
        port = free_port()
        processes.append(subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return base
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("prometheus did not start")

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=20)

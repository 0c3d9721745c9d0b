"""/metrics in either server: rendered off the event loop, so a scrape waiting on the metrics folder
(a fold of a dead worker's files in progress) holds no request of the worker; scrapes render one at a
time."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from proxy.serving.exposition import metrics_handler
from proxy.serving.metric_files import folder_lock


async def test_a_scrape_waiting_on_a_fold_holds_no_request_and_scrapes_render_one_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # several workers: the folder is read

    async def ping(_: web.Request) -> web.Response:
        return web.Response(text="pong")

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(CollectorRegistry()))
    app.router.add_get("/ping", ping)
    threads_before = threading.active_count()
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        async def get(path: str) -> int:
            async with session.get(server.make_url(path)) as response:
                await response.read()
                return response.status

        with folder_lock(tmp_path, exclusive=True):  # the supervisor folding a dead worker's files
            scrapes = [asyncio.ensure_future(get("/metrics")) for _ in range(4)]
            await asyncio.sleep(0.3)
            assert await asyncio.wait_for(get("/ping"), 5.0) == 200  # the loop serves meanwhile
            assert not any(s.done() for s in scrapes)
            assert threading.active_count() - threads_before <= 1  # one render waits; the others queue
        assert await asyncio.wait_for(asyncio.gather(*scrapes), 10.0) == [200] * 4

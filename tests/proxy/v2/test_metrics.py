"""v2's metrics with several worker processes: whichever worker answers the scrape, the totals are
those of all workers (prometheus_client's multiprocess mode), on the metrics listener only."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable

import aiohttp

from tests.conftest import wait_until
from tests.fixtures.v2_stack import Stack


async def test_two_worker_processes_export_one_total(free_port: Callable[[], int], stack: Stack) -> None:
    tenant = stack.add_tenant()
    port, metrics_port = free_port(), free_port()
    fake = str(stack.midtrans_server.make_url("")).rstrip("/")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy.v2", "--database-url", stack.database.app_url, "--listen", f"127.0.0.1:{port}",
         "--metrics-listen", f"127.0.0.1:{metrics_port}", "--workers", "2",
         "--snap-url-sandbox", f"{fake}/sandbox/snap/v1/transactions", "--smtp-timeout", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        async def get(url: str) -> tuple[int, str]:
            # A new connection each time: SO_REUSEPORT spreads them over both workers.
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session, \
                    session.get(url) as response:
                return response.status, await response.text()

        for _ in range(300):
            assert process.poll() is None, process.communicate()[0]
            try:
                if (await get(f"http://127.0.0.1:{port}/health"))[0] == 200:
                    break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        orders = [f"MP-{n}" for n in range(8)]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            for n, order in enumerate(orders):
                body = {"orderId": order, "amount": 1000 + n, "email": "a@b.co", "phone": "1", "name": "A"}
                async with session.post(f"http://127.0.0.1:{port}/payment/create?tenant={tenant.slug}",
                                        json=body) as response:
                    assert response.status == 200
        await wait_until(lambda: sum(len(stack.relay.to(o)) for o in orders) == len(orders), timeout_s=20)
        pattern = rf'^dualstack_v2_emails_sent_total\{{template="order_created",tenant="{tenant.slug}"\}} (\S+)$'
        # A worker counts a send once the relay has answered it: the relay may hold the last email a
        # moment before its worker's count moves. Then every scrape, whichever worker answers it, agrees.
        for _ in range(200):
            text = (await get(f"http://127.0.0.1:{metrics_port}/metrics"))[1]
            if (found := re.search(pattern, text, re.MULTILINE)) is not None and float(found.group(1)) == len(orders):
                break
            await asyncio.sleep(0.05)
        for _ in range(6):
            status, text = await get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert status == 200
            match = re.search(pattern, text, re.MULTILINE)
            assert match is not None and float(match.group(1)) == len(orders), text[-2000:]
        assert (await get(f"http://127.0.0.1:{port}/metrics"))[0] == 404  # never on the service's address
    finally:
        process.terminate()
        try:
            output = await asyncio.to_thread(process.communicate, timeout=20)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output[0]

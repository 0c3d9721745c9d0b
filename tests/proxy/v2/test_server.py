"""v2 as a real process: workers sharing a port, SIGHUP survived, SIGTERM drains, bad input exits 2."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp

from controlplane.errors import ExitStatus

# Nothing listens here: v2 starts anyway and answers /health with 503 (database down).
NO_DATABASE = "postgresql://nobody@127.0.0.1:1/none"


def start_v2(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    return subprocess.Popen([sys.executable, "-m", "proxy.v2", "--database-url", NO_DATABASE, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


async def health(url: str) -> dict[str, object] | None:
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{url}/health") as response:
            return dict(await response.json())
    except aiohttp.ClientError:
        return None


def stop(process: subprocess.Popen[str]) -> str:
    try:
        return process.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.communicate()[0]


async def test_workers_serve_survive_sighup_and_drain_on_sigterm(free_port: Callable[[], int]) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_v2("--listen", f"127.0.0.1:{port}", "--workers", "2", "--drain-timeout", "5")
    try:
        for _ in range(300):
            assert process.poll() is None, process.communicate()[0]
            if await health(url) is not None:
                break
            await asyncio.sleep(0.05)
        answer = await health(url)
        assert answer is not None
        assert {k: answer[k] for k in ("status", "version", "database")} == {
            "status": "degraded", "version": "2.0.0", "database": "down"}
        workers = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True,
                                 check=False).stdout.split()
        assert len(workers) >= 2
        process.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)  # not a timing assertion: a SIGHUP that killed a worker would show below
        assert process.poll() is None
        assert await health(url) is not None
        process.terminate()
        output = await asyncio.to_thread(stop, process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, output
    assert "no file to reload" in output
    assert "starting another" not in output  # no worker died and had to be replaced
    assert "draining" in output


async def test_an_unusable_routing_file_listen_address_or_worker_count_exits_2(free_port: Callable[[], int], tmp_path: Path) -> None:
    bad = tmp_path / "routing.yaml"
    bad.write_text("tenants: {")
    process = start_v2("--listen", f"127.0.0.1:{free_port()}", "--routing", str(bad))
    output = await asyncio.to_thread(stop, process)
    assert process.returncode == 2
    assert f"{bad}:1: (document): invalid YAML" in output
    process = start_v2("--listen", "nowhere")
    output = await asyncio.to_thread(stop, process)
    assert process.returncode == 2
    assert "expected HOST:PORT" in output
    process = start_v2("--listen", f"127.0.0.1:{free_port()}", "--workers", "0")  # as the router: no silent 1
    output = await asyncio.to_thread(stop, process)
    assert process.returncode == 2
    assert "--workers must be at least 1" in output


async def test_a_url_template_with_a_placeholder_that_cannot_be_filled_exits_2(free_port: Callable[[], int]) -> None:
    """Once accepted at start-up, such a template failed every create with a plain-text 500."""
    process = start_v2("--listen", f"127.0.0.1:{free_port()}", "--notification-url-template",
                       "https://{slug}.{base_domain}/webhooks/midtrans/{order_id}")
    output = await asyncio.to_thread(stop, process)
    assert process.returncode == 2
    assert "{order_id} is not a placeholder; valid placeholders: {slug}, {base_domain}" in output
    process = start_v2("--listen", f"127.0.0.1:{free_port()}", "--finish-url-template",
                       "https://{slug}.{base_domain}/thank-you?order={orderId}")
    output = await asyncio.to_thread(stop, process)
    assert process.returncode == 2
    assert "--finish-url-template" in output
    assert "{orderId} is not a placeholder; valid placeholders: {slug}, {base_domain}, {order_id}" in output


async def test_a_port_another_process_holds_exits_3_as_the_readme_says() -> None:
    """3: something outside the input failed (the README's exit-code table, the CLI's ExitStatus)."""
    with socket.socket() as holder:  # no SO_REUSEPORT: nobody may share it
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        busy = f"127.0.0.1:{holder.getsockname()[1]}"
        for workers in ("1", "2"):  # a supervisor does not restart a worker that cannot listen
            process = start_v2("--listen", busy, "--workers", workers)
            output = await asyncio.to_thread(stop, process)
            assert process.returncode == ExitStatus.ENVIRONMENT == 3, output
            assert "cannot listen" in output and "starting another" not in output, output

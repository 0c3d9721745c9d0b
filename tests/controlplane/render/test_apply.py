"""A real nginx on a loopback port, in front of the real router and real upstream servers."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controlplane.config import RoutingConfig, load_config_text
from controlplane.render.apply import NginxFailure, apply, live_version, nginx_binary, wrapper_config
from controlplane.render.nginx import VERSION_PATH, render
from tests.conftest import RouterFactory, Upstream, routing_yaml
from tests.proxy.test_forward import free_port

pytestmark = pytest.mark.skipif(not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")),
                                reason="nginx is not installed")

TENANTS = """\
buatfilm: {backend: v1}
demo: {backend: v2}
direct: {backend: v2, via: direct}
"""


@dataclass
class Nginx:
    prefix: Path
    live: Path
    port: int
    process: subprocess.Popen[str]
    reload: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def get(self, path: str, host: str, **kwargs: Any) -> tuple[int, dict[str, Any] | str, Any]:
        async with aiohttp.ClientSession() as session, session.request(
            kwargs.pop("method", "GET"), f"{self.url}{path}", headers={"Host": host, **kwargs.pop("headers", {})},
            **kwargs) as response:
            text = await response.text()
            try:
                return response.status, await response.json(content_type=None), response.headers
            except ValueError:
                return response.status, text, response.headers


@dataclass
class Stack:
    nginx: Nginx
    upstreams: dict[str, Upstream]
    router: Any
    yaml: str

    def config(self, yaml: str | None = None) -> RoutingConfig:
        return load_config_text(yaml or self.yaml, "routing.yaml")


@pytest.fixture
async def stack(upstreams: dict[str, Upstream], make_router: RouterFactory, tmp_path: Path) -> AsyncIterator[Stack]:
    router = await make_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS))
    port = free_port()
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS).replace(
        "tenants:\n", textwrap.dedent(f"""\
            nginx:
              router_url: "{router.url}"
              listen_ports: [{port}]
              access_log: {tmp_path}/access.log
            tenants:
            """), 1)
    prefix = tmp_path / "nginx"
    (prefix / "temp").mkdir(parents=True)
    live = prefix / "dualstack"
    render(load_config_text(yaml, "routing.yaml"), live).write(live)  # what ops had before the first apply
    conf = prefix / "nginx.conf"
    conf.write_text(wrapper_config(prefix, live))
    process = subprocess.Popen([nginx_binary(), "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    nginx = Nginx(prefix, live, port, process, [nginx_binary(), "-p", str(prefix), "-c", str(conf), "-s", "reload"])
    for _ in range(100):
        if await asyncio.to_thread(live_version, f"{nginx.url}{VERSION_PATH}", None):
            break
        await asyncio.sleep(0.05)
    yield Stack(nginx, upstreams, router, yaml)
    process.terminate()
    process.communicate(timeout=10)


async def test_the_right_backend_gets_the_right_slug_whatever_the_client_sends(stack: Stack) -> None:
    status, body, headers = await stack.nginx.get("/orders/1/status", "buatfilm.agentbar.ai",
                                                  headers={"X-Tenant-Slug": "demo", "X-Forwarded-For": "6.6.6.6",
                                                           "X-Request-ID": "forged"})
    assert (status, body) == (200, {"backend": "v1", "tenant": "buatfilm"})
    assert headers["X-Dualstack-Backend"] == "v1"  # through the router
    seen = stack.upstreams["v1"].seen[-1].headers
    assert seen["X-Tenant-Slug"] == "buatfilm"
    assert "6.6.6.6" not in seen["X-Forwarded-For"] and seen["X-Request-ID"] != "forged"
    status, body, _ = await stack.nginx.get("/x", "demo.agentbar.ai", headers={"X-Tenant-Slug": "buatfilm"})
    assert body == {"backend": "v2", "tenant": "demo"}


async def test_platform_and_unknown_hosts_never_reach_a_backend(stack: Stack) -> None:
    for host, error in (("www.agentbar.ai", "platform_host"), ("nobody.agentbar.ai", "unknown_host"),
                        ("evil.example.com", "unknown_host")):
        status, body, _ = await stack.nginx.get("/payment/create", host, method="POST", json={},
                                                headers={"X-Tenant-Slug": "buatfilm"})
        assert status == 404 and isinstance(body, dict) and body["error"] == error, (host, body)
    assert stack.upstreams["v1"].seen == [] and stack.upstreams["v2"].seen == []
    assert stack.router.sample("dualstack_requests_total", tenant="unknown", backend="none", code_class="4xx") == 0


async def test_a_direct_tenant_bypasses_the_router(stack: Stack) -> None:
    status, body, headers = await stack.nginx.get("/x", "direct.agentbar.ai")
    assert (status, body) == (200, {"backend": "v2", "tenant": "direct"})
    assert headers["X-Dualstack-Backend"] == "spoofed"  # the upstream's own header: no router on the path
    assert stack.router.sample("dualstack_requests_total", tenant="direct", backend="v2", code_class="2xx") == 0


async def test_a_dead_router_degrades_to_the_tenants_backend_but_webhooks_wait(stack: Stack) -> None:
    await stack.router.server.close()
    status, body, headers = await stack.nginx.get("/orders/1/status", "buatfilm.agentbar.ai")
    assert (status, body) == (200, {"backend": "v1", "tenant": "buatfilm"})  # v1 directly
    assert headers["X-Dualstack-Backend"] == "spoofed"  # the upstream's own header: no router on the path
    status, body, _ = await stack.nginx.get("/x", "demo.agentbar.ai")
    assert body == {"backend": "v2", "tenant": "demo"}  # a v2 tenant keeps its own storage
    before = len(stack.upstreams["v1"].seen)
    status, _, _ = await stack.nginx.get("/webhooks/midtrans", "buatfilm.agentbar.ai", method="POST", json={})
    assert status == 502  # Midtrans retries later; never sent to another backend meanwhile
    assert len(stack.upstreams["v1"].seen) == before


async def test_apply_swaps_reloads_and_proves_the_new_version_live(stack: Stack) -> None:
    flipped = stack.yaml.replace("buatfilm: {backend: v1}", "buatfilm: {backend: v2}")
    report = await asyncio.to_thread(apply, stack.config(flipped), stack.nginx.live,
                                     reload_command=stack.nginx.reload, main_config=None,
                                     verify_url=f"{stack.nginx.url}{VERSION_PATH}")
    assert report.changed and report.steps[-1].startswith(f"version {report.version} is live")
    assert stack.nginx.live.is_symlink()
    assert any(p.name.startswith("manual-") for p in stack.nginx.live.parent.glob("dualstack.releases/*"))
    _, body, _ = await stack.nginx.get("/x", "buatfilm.agentbar.ai")
    assert body == {"backend": "v1", "tenant": "buatfilm"}  # nginx still goes via the router (router config)
    again = await asyncio.to_thread(apply, stack.config(flipped), stack.nginx.live,
                                    reload_command=stack.nginx.reload, main_config=None,
                                    verify_url=f"{stack.nginx.url}{VERSION_PATH}")
    assert not again.changed and again.steps == ["already live: nothing to do"]


@pytest.mark.parametrize("failure", ["nginx -t", "reload fails", "reload does nothing"])
async def test_a_failed_apply_restores_the_previous_files_and_nginx_keeps_serving(
    stack: Stack, failure: str
) -> None:
    url = f"{stack.nginx.url}{VERSION_PATH}"
    await asyncio.to_thread(apply, stack.config(), stack.nginx.live, reload_command=stack.nginx.reload,
                            main_config=None, verify_url=url)
    good_target = stack.nginx.live.resolve()
    good_version = await asyncio.to_thread(live_version, url, None)
    candidate = stack.yaml.replace("demo: {backend: v2}", "demo: {backend: v1}")
    reload_command = stack.nginx.reload
    if failure == "nginx -t":  # a certificate that does not exist: nginx -t refuses the candidate
        candidate = candidate.replace("nginx:\n", "nginx:\n  tls: {port: 18443, certificate: /nonexistent/c.pem, "
                                                  "certificate_key: /nonexistent/k.pem}\n")
    elif failure == "reload fails":
        reload_command = ["false"]
    else:
        reload_command = ["true"]
    with pytest.raises(NginxFailure) as info:
        await asyncio.to_thread(apply, stack.config(candidate), stack.nginx.live, reload_command=reload_command,
                                main_config=None, verify_url=url, verify_timeout_s=1.0)
    if failure == "nginx -t":
        assert "/nonexistent/c.pem" in str(info.value)  # nginx's own message
    else:
        assert "restored" in str(info.value)
    assert stack.nginx.live.resolve() == good_target
    assert await asyncio.to_thread(live_version, url, None) == good_version
    status, body, _ = await stack.nginx.get("/x", "demo.agentbar.ai")
    assert (status, body) == (200, {"backend": "v2", "tenant": "demo"})

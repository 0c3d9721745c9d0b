"""A real nginx on a loopback port, in front of the real router and real upstream servers."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controlplane.config import RoutingConfig, load_config_text
from controlplane.render.apply import apply, live_version
from controlplane.render.nginx import VERSION_PATH, render
from controlplane.render.nginx_check import (
    NginxFailure,
    in_place_available,
    nginx_binary,
    run_nginx_test,
    wrapper_config,
)
from tests.conftest import RouterFactory, Upstream, routing_yaml, signed

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
    conf: Path
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
async def stack(free_port: Callable[[], int], upstreams: dict[str, Upstream], make_router: RouterFactory, tmp_path: Path) -> AsyncIterator[Stack]:
    router = await make_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS))
    port = free_port()
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url, TENANTS).replace(
        "tenants:\n", textwrap.dedent(f"""\
            nginx:
              router_url: "{router.url}"
              listen_ports: [{port}]
              access_log: {tmp_path}/access.log
              site: {{mode: static, root: "{tmp_path}/site"}}
            tenants:
            """), 1)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<!doctype html><div id=root></div>")
    prefix = tmp_path / "nginx"
    (prefix / "temp").mkdir(parents=True)
    live = prefix / "dualstack"
    render(load_config_text(yaml, "routing.yaml"), live).write(live)  # what ops had before the first apply
    conf = prefix / "nginx.conf"
    conf.write_text(wrapper_config(prefix, live))
    process = subprocess.Popen([nginx_binary(), "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    nginx = Nginx(prefix, live, conf, port, process, [nginx_binary(), "-p", str(prefix), "-c", str(conf), "-s", "reload"])
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
    status, body, _ = await stack.nginx.get("/health", "demo.agentbar.ai", headers={"X-Tenant-Slug": "buatfilm"})
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
    status, body, headers = await stack.nginx.get("/orders/1/status", "direct.agentbar.ai")
    assert (status, body) == (200, {"backend": "v2", "tenant": "direct"})
    assert headers["X-Dualstack-Backend"] == "spoofed"  # the upstream's own header: no router on the path
    assert stack.router.sample("dualstack_requests_total", tenant="direct", backend="v2", code_class="2xx") == 0


async def test_a_direct_tenants_notifications_still_go_through_the_router(stack: Stack) -> None:
    """`via: direct` is for the API only: a notification that skipped the router would reach the backend
    unverified (v1 applies whatever it is sent)."""
    forged = {"order_id": "ORD-1", "status_code": "200", "gross_amount": "1.00", "transaction_status": "settlement",
              "signature_key": "forged"}
    status, _, _ = await stack.nginx.get("/webhooks/midtrans", "direct.agentbar.ai", method="POST", json=forged)
    assert status == 403 and stack.upstreams["v2"].seen == []
    assert stack.router.sample("dualstack_notifications_refused_total", tenant="direct", reason="invalid_signature") == 1
    status, body, headers = await stack.nginx.get("/webhooks/midtrans", "direct.agentbar.ai", method="POST",
                                                  json=signed({**forged, "signature_key": None}))
    assert (status, body) == (200, {"backend": "v2", "tenant": "direct"})
    assert headers["X-Dualstack-Backend"] == "v2"  # the router's header: it verified the notification


async def test_a_dead_router_degrades_to_the_tenants_backend_but_webhooks_wait(stack: Stack) -> None:
    await stack.router.server.close()
    status, body, headers = await stack.nginx.get("/orders/1/status", "buatfilm.agentbar.ai")
    assert (status, body) == (200, {"backend": "v1", "tenant": "buatfilm"})  # v1 directly
    assert headers["X-Dualstack-Backend"] == "spoofed"  # the upstream's own header: no router on the path
    status, body, _ = await stack.nginx.get("/orders/1/status", "demo.agentbar.ai")
    assert body == {"backend": "v2", "tenant": "demo"}  # a v2 tenant keeps its own storage
    before = len(stack.upstreams["v1"].seen)
    status, _, _ = await stack.nginx.get("/webhooks/midtrans", "buatfilm.agentbar.ai", method="POST", json={})
    assert status == 502  # Midtrans retries later; never sent to another backend meanwhile
    assert len(stack.upstreams["v1"].seen) == before


async def test_apply_swaps_reloads_and_proves_the_new_version_live(stack: Stack) -> None:
    flipped = stack.yaml.replace("buatfilm: {backend: v1}", "buatfilm: {backend: v2}")
    report = await asyncio.to_thread(apply, stack.config(flipped), stack.nginx.live,
                                     reload_command=stack.nginx.reload, main_config=stack.nginx.conf,
                                     verify_url=f"{stack.nginx.url}{VERSION_PATH}")
    assert report.changed and report.steps[-2].startswith(f"version {report.version} is live")
    # Only /health answered: / is 500 in this stack (its workers, not root, cannot read the test's folder).
    assert report.steps[-1] == "6 probe(s) of tenant sites and APIs answer as before (3 answered before)"
    assert stack.nginx.live.is_symlink()
    assert any(p.name.startswith("manual-") for p in stack.nginx.live.parent.glob("dualstack.releases/*"))
    _, body, _ = await stack.nginx.get("/orders/1/status", "buatfilm.agentbar.ai")
    assert body == {"backend": "v1", "tenant": "buatfilm"}  # nginx still goes via the router (router config)
    again = await asyncio.to_thread(apply, stack.config(flipped), stack.nginx.live,
                                    reload_command=stack.nginx.reload, main_config=stack.nginx.conf,
                                    verify_url=f"{stack.nginx.url}{VERSION_PATH}")
    assert not again.changed and again.steps == ["already live: nothing to do"]


async def test_apply_tests_in_place_and_reloads_by_a_signal_to_the_master_its_config_names(stack: Stack) -> None:
    flipped = stack.yaml.replace("buatfilm: {backend: v1}", "buatfilm: {backend: v2}")
    report = await asyncio.to_thread(apply, stack.config(flipped), stack.nginx.live, reload_command=None,
                                     main_config=stack.nginx.conf, verify_url=f"{stack.nginx.url}{VERSION_PATH}")
    assert f"reload signalled (SIGHUP to the nginx master ({stack.nginx.prefix}/nginx.pid))" in report.steps
    assert report.steps[-2].startswith(f"version {report.version} is live")
    tested = next(step for step in report.steps if step.startswith("nginx -t passed on"))
    swapped = next(step for step in report.steps if " now points at " in step)
    if in_place_available():  # before the swap, once, in the main config: no copy, no second run after it
        assert tested == f"nginx -t passed on {stack.nginx.conf} with the candidate at {stack.nginx.live}"
        assert report.steps.index(tested) < report.steps.index(swapped)
        assert sum(step.startswith("nginx -t passed") for step in report.steps) == 1


@pytest.mark.parametrize("failure", ["nginx -t", "reload fails", "reload does nothing"])
async def test_a_failed_apply_restores_the_previous_files_and_nginx_keeps_serving(
    stack: Stack, failure: str
) -> None:
    url = f"{stack.nginx.url}{VERSION_PATH}"
    await asyncio.to_thread(apply, stack.config(), stack.nginx.live, reload_command=stack.nginx.reload,
                            main_config=stack.nginx.conf, verify_url=url)
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
                                main_config=stack.nginx.conf, verify_url=url, verify_timeout_s=1.0)
    if failure == "nginx -t":
        assert "/nonexistent/c.pem" in str(info.value)  # nginx's own message
    else:
        assert "restored" in str(info.value)
    assert stack.nginx.live.resolve() == good_target
    assert await asyncio.to_thread(live_version, url, None) == good_version
    status, body, _ = await stack.nginx.get("/orders/1/status", "demo.agentbar.ai")
    assert (status, body) == (200, {"backend": "v2", "tenant": "demo"})


def _files(live: Path) -> dict[str, tuple[int, int]]:
    """Each file of the live release: (inode, mtime in ns)."""
    root = live.resolve()
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


async def test_flipping_one_tenant_writes_only_its_files_and_a_failed_apply_keeps_them(stack: Stack) -> None:
    url = f"{stack.nginx.url}{VERSION_PATH}"
    await asyncio.to_thread(apply, stack.config(), stack.nginx.live, reload_command=stack.nginx.reload,
                            main_config=stack.nginx.conf, verify_url=url)
    before = _files(stack.nginx.live)
    flipped = stack.yaml.replace("demo: {backend: v2}", "demo: {backend: v1}")
    report = await asyncio.to_thread(apply, stack.config(flipped), stack.nginx.live,
                                     reload_command=stack.nginx.reload, main_config=stack.nginx.conf, verify_url=url)
    after = _files(stack.nginx.live)
    assert after.keys() == before.keys()
    assert {name for name in after if after[name] != before[name]} == {"api/demo.conf", "tenants/demo.conf",
                                                                       "version.conf"}
    assert f"(3 of {len(after)} files changed;" in next(s for s in report.steps if s.startswith("rendered version"))
    assert "proxy_pass http://dualstack_router_then_v1;" in (stack.nginx.live / "api" / "demo.conf").read_text()
    # a candidate nginx refuses: the live files stay as they were, inode for inode
    refused = flipped.replace("nginx:\n", "nginx:\n  tls: {port: 18443, certificate: /nonexistent/c.pem, "
                                           "certificate_key: /nonexistent/k.pem}\n")
    with pytest.raises(NginxFailure, match=r"/nonexistent/c\.pem"):
        await asyncio.to_thread(apply, stack.config(refused), stack.nginx.live, reload_command=stack.nginx.reload,
                                main_config=stack.nginx.conf, verify_url=url, verify_timeout_s=1.0)
    assert _files(stack.nginx.live) == after
    assert await asyncio.to_thread(live_version, url, None) == report.version


def test_nginx_warnings_that_drop_part_of_the_config_fail_the_test(tmp_path: Path) -> None:
    (tmp_path / "temp").mkdir()
    servers = "    server { listen 127.0.0.1:1; server_name a.example; }\n" * 2
    conf = tmp_path / "nginx.conf"
    conf.write_text(wrapper_config(tmp_path, tmp_path / "none", servers).replace(
        f"    include {tmp_path}/none/http.conf;\n", ""))
    with pytest.raises(NginxFailure) as info:
        run_nginx_test(["-q", "-c", str(conf)])
    assert str(info.value).startswith("nginx -t passed, but nginx would ignore part of the config:\n")
    assert 'conflicting server name "a.example" on 127.0.0.1:1, ignored' in str(info.value)  # nginx's words
    conf.write_text(conf.read_text().replace("server_name a.example; }\n", "server_name b.example; }\n", 1))
    run_nginx_test(["-q", "-c", str(conf)])  # distinct names: clean


async def test_an_own_server_block_naming_an_address_on_the_port_is_refused_and_nothing_changes(
        stack: Stack) -> None:
    url = f"{stack.nginx.url}{VERSION_PATH}"
    await asyncio.to_thread(apply, stack.config(), stack.nginx.live, reload_command=stack.nginx.reload,
                            main_config=stack.nginx.conf, verify_url=url)
    good_target = stack.nginx.live.resolve()
    # ops add a block of their own on 127.0.0.1 and the same port: it would take every tenant's requests
    text = stack.nginx.conf.read_text()
    own = f"    server {{ listen 127.0.0.1:{stack.nginx.port}; server_name own.example; return 200 own; }}\n"
    stack.nginx.conf.write_text(text[:text.rindex("}")] + own + "}\n")
    flipped = stack.yaml.replace("demo: {backend: v2}", "demo: {backend: v1}")
    with pytest.raises(NginxFailure) as info:
        await asyncio.to_thread(apply, stack.config(flipped), stack.nginx.live, reload_command=stack.nginx.reload,
                                main_config=stack.nginx.conf, verify_url=url, verify_timeout_s=1.0)
    assert f"`listen 127.0.0.1:{stack.nginx.port}` names one address on port {stack.nginx.port}" in str(info.value)
    assert stack.nginx.live.resolve() == good_target

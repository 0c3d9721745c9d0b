"""The funnel site keeps working when nginx takes the generated includes, end to end: a real nginx on
loopback, a built single-page site in a folder, the real router in front of real upstreams, and
ops' own server block next to the include."""

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

from controlplane.cli import ExitStatus, run
from controlplane.config import RoutingConfig, load_config_text
from controlplane.render.apply import apply, live_version
from controlplane.render.nginx import VERSION_PATH, render
from controlplane.render.nginx_check import NginxFailure, in_place_available, nginx_binary, wrapper_config
from tests.conftest import RouterFactory, Upstream, routing_yaml, signed

pytestmark = [pytest.mark.nginx, pytest.mark.skipif(not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")),
                                                    reason="nginx is not installed")]

HOST = "buatfilm.agentbar.ai"
INDEX = "<!doctype html><title>buatfilm funnel</title><div id=root></div><script src=/assets/app-3f2a.js></script>"
ASSET = "console.log('funnel');"
API = [("POST", "/payment/create"), ("GET", "/orders/ORD-1/status"), ("POST", "/webhooks/midtrans"),
       ("GET", "/health")]

# What the router verifies before a backend sees a notification.
NOTIFICATION = signed({"order_id": "ORD-1", "status_code": "200", "gross_amount": "1.00",
                       "transaction_status": "settlement"})

@dataclass
class Funnel:
    tmp: Path
    live: Path
    conf: Path
    port: int
    reload: list[str]
    upstreams: dict[str, Upstream]
    router: Any
    nginx_section: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def yaml(self, site: str | None, hosts: str = "") -> str:
        tenant = "buatfilm: {backend: v1" + (f", site: {site}" if site else "") + (f", hosts: [{hosts}]" if hosts
                                                                                 else "") + "}\n"
        yaml = routing_yaml(self.upstreams["v1"].url, self.upstreams["v2"].url, tenant)
        return yaml.replace("tenants:\n", self.nginx_section + "tenants:\n", 1)

    def config(self, site: str | None, hosts: str = "") -> RoutingConfig:
        return load_config_text(self.yaml(site, hosts), "routing.yaml")

    def apply(self, config: RoutingConfig) -> Any:
        return apply(config, self.live, reload_command=self.reload, main_config=self.conf,
                     verify_url=f"{self.url}{VERSION_PATH}", verify_timeout_s=5.0)

    async def get(self, path: str, method: str = "GET", host: str = HOST) -> tuple[int, str, str]:
        async with aiohttp.ClientSession() as session, session.request(
                method, f"{self.url}{path}", headers={"Host": host, "X-Tenant-Slug": "demo"},
                json=(NOTIFICATION if path == "/webhooks/midtrans" else {}) if method == "POST" else None) as response:
            return response.status, await response.text(), response.headers.get("Content-Type", "")


def built_site(folder: Path, title: str = "buatfilm funnel") -> Path:
    (folder / "assets").mkdir(parents=True)
    (folder / "index.html").write_text(INDEX.replace("buatfilm funnel", title))
    (folder / "assets" / "app-3f2a.js").write_text(ASSET)
    return folder


@pytest.fixture
async def funnel(free_port: Callable[[], int], upstreams: dict[str, Upstream], make_router: RouterFactory, tmp_path: Path) -> AsyncIterator[Funnel]:
    router = await make_router(routing_yaml(upstreams["v1"].url, upstreams["v2"].url, "buatfilm: {backend: v1}\n"))
    port = free_port()
    section = textwrap.dedent(f"""\
        nginx:
          router_url: "{router.url}"
          listen_ports: [{port}]
          access_log: {tmp_path}/access.log
        """)
    prefix = tmp_path / "nginx"
    (prefix / "temp").mkdir(parents=True)
    (prefix / "ops").mkdir()
    live = prefix / "dualstack"
    conf = prefix / "nginx.conf"
    # What ops' nginx.conf has: MIME types, their own server blocks, and the generated include; as
    # root, workers that may read the test's private folders (nginx would run them as nobody).
    conf.write_text(("user root;\n" if os.geteuid() == 0 else "")
                    + wrapper_config(prefix, live, "    types { text/html html; application/javascript js; }\n"
                                                   f"    include {prefix}/ops/*.conf;\n"))
    reload = [nginx_binary(), "-p", str(prefix), "-c", str(conf), "-s", "reload"]
    made = Funnel(tmp_path, live, conf, port, reload, upstreams, router, section)
    yield made
    if (prefix / "nginx.pid").exists():
        subprocess.run([nginx_binary(), "-p", str(prefix), "-c", str(conf), "-s", "stop"], check=False,
                       capture_output=True, timeout=30)


async def start(funnel: Funnel, config: RoutingConfig) -> None:
    render(config, funnel.live).write(funnel.live)  # what nginx ran before the first apply
    prefix = funnel.conf.parent
    subprocess.run([nginx_binary(), "-p", str(prefix), "-c", str(funnel.conf)], check=True, timeout=30)
    for _ in range(200):
        if await asyncio.to_thread(live_version, f"{funnel.url}{VERSION_PATH}", None):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("nginx did not start")


async def assert_api_reaches_the_router(funnel: Funnel) -> None:
    v1 = funnel.upstreams["v1"].seen
    before = len(v1)
    for method, path in API:
        status, body, _ = await funnel.get(path, method)
        assert status == 200 and '"tenant": "buatfilm"' in body, (path, body)  # not the client's "demo"
    reached = v1[before:]
    assert [(s.method, s.path_qs) for s in reached] == API
    assert {s.headers["X-Tenant-Slug"] for s in reached} == {"buatfilm"}
    assert funnel.router.sample("dualstack_requests_total", tenant="buatfilm", backend="v1", code_class="2xx") \
        >= len(API)


async def test_the_site_is_served_by_nginx_and_only_the_api_reaches_the_router(funnel: Funnel) -> None:
    site = built_site(funnel.tmp / "site")
    await start(funnel, funnel.config(f'{{mode: static, root: "{site}"}}'))
    for path in ("/", "/thank-you?order_id=ORD-1", "/payment/success"):  # client-side routes: index.html
        status, body, content_type = await funnel.get(path)
        assert (status, body, content_type) == (200, INDEX, "text/html"), path
    assert await funnel.get("/assets/app-3f2a.js") == (200, ASSET, "application/javascript")
    assert funnel.upstreams["v1"].seen == [] and funnel.upstreams["v2"].seen == []  # none of it was the API's
    await assert_api_reaches_the_router(funnel)


def ops_server_block(funnel: Funnel) -> None:
    """Ops keep their server block for the host and include the generated API locations (site mode snippet)."""
    ops_site = built_site(funnel.tmp / "ops-site", title="ops' own site")
    (funnel.conf.parent / "ops" / "buatfilm.conf").write_text(textwrap.dedent(f"""\
        server {{
            listen {funnel.port};
            server_name {HOST};
            root {ops_site};
            location / {{ try_files $uri $uri/ /index.html; }}
            include {funnel.live}/api/buatfilm.conf;
        }}
        """))


async def test_an_existing_server_block_for_the_host_fails_the_apply_and_keeps_the_release(funnel: Funnel) -> None:
    ops_server_block(funnel)
    await start(funnel, funnel.config(None))
    first = await asyncio.to_thread(funnel.apply, funnel.config(None))  # the first apply: the default, snippet
    assert first.steps[-1] == "2 probe(s) of tenant sites and APIs answer as before (2 answered before)"
    kept = funnel.live.resolve()
    status, body, _ = await funnel.get("/thank-you?order_id=ORD-1")
    assert status == 200 and "ops' own site" in body
    await assert_api_reaches_the_router(funnel)

    # A generated server block for the same host: nginx -t passes with a warning, and would drop one.
    with pytest.raises(NginxFailure) as info:
        await asyncio.to_thread(funnel.apply, funnel.config(f'{{mode: static, root: "{funnel.tmp}/site"}}'))
    assert f'conflicting server name "{HOST}" on 0.0.0.0:{funnel.port}, ignored' in str(info.value)
    # As root, found before the swap (the main config tested with the candidate in place); else after it.
    assert (f"nothing changed: {funnel.live} still points at {kept.name}" if in_place_available()
            else f"restored {kept.name}") in str(info.value)
    assert funnel.live.resolve() == kept
    status, body, _ = await funnel.get("/")
    assert status == 200 and "ops' own site" in body


async def test_a_site_that_stops_answering_after_the_apply_restores_the_previous_release(funnel: Funnel) -> None:
    site = built_site(funnel.tmp / "site")
    good = funnel.config(f'{{mode: static, root: "{site}", probe: /thank-you}}')
    await start(funnel, good)
    await asyncio.to_thread(funnel.apply, good)
    kept = funnel.live.resolve()
    (funnel.tmp / "empty").mkdir()  # a release pointing at a folder the build never reached
    broken = funnel.config(f'{{mode: static, root: "{funnel.tmp}/empty", probe: /thank-you}}')
    with pytest.raises(NginxFailure) as info:
        await asyncio.to_thread(funnel.apply, broken)
    assert f"probe {HOST}/thank-you: answered 200 before the apply, 500 after it" in str(info.value)
    assert funnel.live.resolve() == kept
    assert f"version {kept.name.split('-')[0]} is live again" in str(info.value)
    assert await funnel.get("/thank-you") == (200, INDEX, "text/html")


async def test_a_host_that_would_lose_its_api_restores_the_previous_release(funnel: Funnel) -> None:
    # The generated server block serves the API, but the site probe never answered (a broken build):
    # dropping the block (site mode snippet, and no server block of ops' own) must not pass unseen.
    (funnel.tmp / "empty").mkdir()
    served = funnel.config(f'{{mode: static, root: "{funnel.tmp}/empty"}}')
    await start(funnel, served)
    await asyncio.to_thread(funnel.apply, served)
    kept = funnel.live.resolve()
    with pytest.raises(NginxFailure) as info:
        await asyncio.to_thread(funnel.apply, funnel.config(None))
    assert f"probe {HOST}/health: answered 200 before the apply, 404 after it" in str(info.value)
    assert funnel.live.resolve() == kept
    await assert_api_reaches_the_router(funnel)


def can_unshare_mounts() -> bool:
    return subprocess.run(["unshare", "--mount", "true"], capture_output=True, check=False, timeout=30).returncode == 0


async def test_check_sees_ops_server_block_for_the_host_as_apply_does(
    funnel: Funnel, capsys: pytest.CaptureFixture[str]
) -> None:
    if not (shutil.which("unshare") and can_unshare_mounts()):
        pytest.skip("no private mount namespaces here (root and util-linux unshare)")
    ops_server_block(funnel)
    await start(funnel, funnel.config(None))
    await asyncio.to_thread(funnel.apply, funnel.config(None))
    kept = funnel.live.resolve()
    routing = funnel.tmp / "routing.yaml"
    main = ["--dir", str(funnel.live), "--nginx-conf", str(funnel.conf)]

    # Snippet mode: the generated files leave the host to ops' block; the main config passes with them.
    routing.write_text(funnel.yaml(None))
    assert await asyncio.to_thread(run, ["nginx", "check", "--config", str(routing), *main]) == ExitStatus.OK
    assert (f"nginx -t: OK on the rendered files on their own; on {funnel.conf} with the candidate at {funnel.live} "
            "(") in capsys.readouterr().out

    # A generated server block for the same host: the rendered files pass on their own, and only the main
    # config, where ops' block is, shows that nginx would ignore one of the two.
    routing.write_text(funnel.yaml(f'{{mode: static, root: "{funnel.tmp}/site"}}'))
    assert await asyncio.to_thread(run, ["nginx", "check", "--config", str(routing)]) == ExitStatus.OK
    capsys.readouterr()
    assert await asyncio.to_thread(run, ["nginx", "check", "--config", str(routing), *main]) == ExitStatus.INVALID
    err = capsys.readouterr().err
    assert "nginx -t passed, but nginx would ignore part of the config:" in err
    assert f'conflicting server name "{HOST}" on 0.0.0.0:{funnel.port}, ignored' in err  # nginx's own words
    assert funnel.live.resolve() == kept  # a check changes nothing live
    status, body, _ = await funnel.get("/")
    assert status == 200 and "ops' own site" in body

    # A main config that never reads the generated files cannot pass for one that does.
    (funnel.conf.parent / "ops" / "buatfilm.conf").unlink()
    funnel.conf.write_text(funnel.conf.read_text().replace(f"include {funnel.live}/http.conf;", ""))
    routing.write_text(funnel.yaml(None))
    assert await asyncio.to_thread(run, ["nginx", "check", "--config", str(routing), *main]) == ExitStatus.INVALID
    assert f"does not include {funnel.live}/http.conf" in capsys.readouterr().err


async def test_an_alias_that_stops_answering_after_the_apply_restores_the_previous_release(
        funnel: Funnel, free_port: Callable[[], int]) -> None:
    # Ops serve every host of *.buatfilm.test with a block of their own (a wildcard: no conflict with an
    # exact name), and the tenant's site server knows its main host only. Declaring the alias hands it to
    # the generated server block, whose site server answers it 404: only a probe of the alias sees it.
    alias, site_port = "shop.buatfilm.test", free_port()
    (funnel.conf.parent / "ops" / "sites.conf").write_text(textwrap.dedent(f"""\
        server {{ listen {funnel.port}; server_name *.buatfilm.test; location / {{ return 200 "ops' alias site"; }} }}
        server {{ listen 127.0.0.1:{site_port}; server_name {HOST}; location / {{ return 200 "funnel site"; }} }}
        server {{ listen 127.0.0.1:{site_port} default_server; server_name _; return 404; }}
        """))
    upstream_site = f'{{mode: upstream, url: "http://127.0.0.1:{site_port}"}}'
    good = funnel.config(upstream_site)
    await start(funnel, good)
    await asyncio.to_thread(funnel.apply, good)
    kept = funnel.live.resolve()
    assert (await funnel.get("/"))[:2] == (200, "funnel site")
    assert (await funnel.get("/", host=alias))[:2] == (200, "ops' alias site")
    with pytest.raises(NginxFailure) as info:
        await asyncio.to_thread(funnel.apply, funnel.config(upstream_site, hosts=alias))
    assert f"probe {alias}/: answered 200 before the apply, 404 after it" in str(info.value)
    assert f"probe {HOST}/:" not in str(info.value)  # the main host was fine
    assert funnel.live.resolve() == kept
    assert (await funnel.get("/", host=alias))[:2] == (200, "ops' alias site")

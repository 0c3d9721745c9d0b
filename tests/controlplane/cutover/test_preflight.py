"""The preflight's health check asks each backend as its `upstreams.<name>.health` says, on real servers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from controlplane.config import load_config_text
from controlplane.config.model import Backend, RoutingConfig
from controlplane.cutover.preflight import health
from controlplane.cutover.request import Check, CutoverRequest
from tests.conftest import free_port
from tests.fixtures.v2_stack import Stack


def routing(v1_url: str, v2_url: str, v1_health: str = "", v2_health: str = "") -> RoutingConfig:
    return load_config_text(
        "upstreams:\n"
        f'  v1: {{url: "{v1_url}"{", health: " + v1_health if v1_health else ""}}}\n'
        f'  v2: {{url: "{v2_url}"{", health: " + v2_health if v2_health else ""}}}\n'
        "base_domain: agentbar.ai\ntenants:\n  shop: {backend: v2}\n")


async def check(config: RoutingConfig, to: Backend, slug: str = "shop") -> Check:
    return await asyncio.to_thread(health, CutoverRequest(config_path=Path("routing.yaml"), slug=slug, to=to),
                                   config)


async def test_a_v1_without_a_health_route_passes_a_declared_tcp_check_only(aiohttp_server: Any) -> None:
    # The seed's SQLite v1: every path it does not know, /health included, is a 404.
    v1 = await aiohttp_server(web.Application())
    url = str(v1.make_url("")).rstrip("/")
    nothing = f"http://127.0.0.1:{free_port()}"
    failed = await check(routing(url, nothing), "v1")
    assert not failed.ok and f"v1 answers 404 at {url}/health (expected 200)" in failed.detail
    passed = await check(routing(url, nothing, v1_health="{tcp: true}"), "v1")
    assert passed.ok and passed.detail == f"v1 accepts TCP connections at {url} (health: tcp; nothing more asked)"
    passed = await check(routing(url, nothing, v1_health="{path: /, expect_status: 404}"), "v1")
    assert passed.ok and passed.detail == f"v1 healthy at {url} (GET / -> 404)"


async def test_a_tcp_check_fails_when_nothing_listens() -> None:
    nothing = f"http://127.0.0.1:{free_port()}"
    failed = await check(routing(nothing, nothing, v1_health="{tcp: true}"), "v1")
    assert not failed.ok and failed.detail.startswith(f"v1 at {nothing} accepts no TCP connection")


async def test_v2s_own_health_also_says_it_knows_the_tenant(stack: Stack) -> None:
    tenant = stack.add_tenant()
    nothing = f"http://127.0.0.1:{free_port()}"
    passed = await check(routing(nothing, stack.url), "v2", tenant.slug)
    assert passed.ok and passed.detail == f"v2 healthy at {stack.url} (GET /health -> 200)"
    failed = await check(routing(nothing, stack.url), "v2", "unknown")
    assert not failed.ok and "v2 is up but does not know tenant 'unknown'" in failed.detail
    # Another path is asked as declared; whether v2 knows the tenant is the `tenant` check's question then.
    passed = await check(routing(nothing, stack.url, v2_health="{path: /health/live}"), "v2", "unknown")
    assert passed.ok and passed.detail == f"v2 healthy at {stack.url} (GET /health/live -> 200)"

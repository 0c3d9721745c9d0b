"""Live reload inside a running router: flips under load, and bad files kept out."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from controlplane.config import ConfigFile
from proxy.router import keys
from proxy.router.metrics import ProxyMetrics
from proxy.router.routing import RoutingTable
from proxy.router.state import RouterState
from proxy.serving.tasks import TaskPool
from tests.conftest import RouterFactory, Upstream, fifo_unblocker, routing_yaml, wait_until

TENANTS_V1 = "buatfilm: {backend: v1}\nother: {backend: v1}\n"
TENANTS_FLIPPED = "buatfilm: {backend: v2}\nother: {backend: v1}\n"


def save(path: Path, text: str) -> None:
    """Save like an editor: write a new file and rename it over the old one."""
    tmp = path.with_name(path.name + ".swp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def test_live_flip_under_concurrent_load_fails_no_request(
    upstreams: dict[str, Upstream], make_router: RouterFactory
) -> None:
    v1, v2 = upstreams["v1"].url, upstreams["v2"].url
    router = await make_router(routing_yaml(v1, v2, TENANTS_V1))
    results: dict[str, list[tuple[int, str]]] = {"buatfilm": [], "other": []}
    stop = asyncio.Event()

    async def client(session: aiohttp.ClientSession, tenant: str) -> None:
        while not stop.is_set():
            async with session.post(f"{router.url}/payment/create", json={"orderId": "A"},
                                    headers={"Host": f"{tenant}.agentbar.ai"}) as response:
                body = await response.json()
                results[tenant].append((response.status, body["backend"]))

    async with aiohttp.ClientSession() as session:
        workers = [asyncio.ensure_future(client(session, tenant))
                   for tenant in ("buatfilm", "other") for _ in range(8)]
        await wait_until(lambda: len(results["buatfilm"]) > 200)
        save(router.config_path, routing_yaml(v1, v2, TENANTS_FLIPPED))
        await wait_until(lambda: results["buatfilm"][-1][1] == "v2")
        flipped_at = len(results["buatfilm"])
        await wait_until(lambda: len(results["buatfilm"]) > flipped_at + 200)
        stop.set()
        await asyncio.gather(*workers)

    statuses = {status for tenant in results for status, _ in results[tenant]}
    assert statuses == {200}, "a request failed during the flip"
    backends = [backend for _, backend in results["buatfilm"]]
    switch = backends.index("v2")
    # before the switch only v1, after it only v2 (requests in flight finish where they started,
    # so a short overlap of v1 answers is possible but never a return to v1 after settling)
    assert set(backends[:switch]) == {"v1"}
    assert set(backends[switch + 16:]) == {"v2"}
    assert {backend for _, backend in results["other"]} == {"v1"}  # untouched
    assert router.sample("dualstack_config_generation") == 2
    assert router.sample("dualstack_tenant_backend", tenant="buatfilm", backend="v2") == 1


async def test_an_invalid_file_keeps_the_last_good_config(
    upstreams: dict[str, Upstream], make_router: RouterFactory
) -> None:
    v1, v2 = upstreams["v1"].url, upstreams["v2"].url
    router = await make_router(routing_yaml(v1, v2, TENANTS_V1))
    save(router.config_path, routing_yaml(v1, v2, "buatfilm: {backend: v3}\nbuatfilm: {backend: v2}\n"))
    await wait_until(lambda: router.sample("dualstack_config_last_reload_success") == 0
                     and router.sample("dualstack_config_issues") == 2)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{router.url}/x", headers={"Host": "buatfilm.agentbar.ai"}) as response:
            assert (await response.json())["backend"] == "v1"
        async with session.get(router.admin.make_url("/routes")) as response:
            routes = await response.json()
    assert routes["generation"] == 1
    assert routes["last_reload"]["ok"] is False
    assert [i.split(": ", 1)[1] for i in routes["last_reload"]["issues"]] == [
        "tenants.buatfilm.backend: unknown backend 'v3' (expected one of: v1, v2)",
        "tenants.buatfilm: duplicate key (first defined on line 8)",
    ]
    assert router.sample("dualstack_config_generation") == 1

    save(router.config_path, "tenants: [unclosed\n")
    await wait_until(lambda: router.sample("dualstack_config_issues") == 1)
    router.config_path.unlink()
    await asyncio.sleep(0.2)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{router.url}/x", headers={"Host": "other.agentbar.ai"}) as response:
            assert (await response.json())["backend"] == "v1"

    save(router.config_path, routing_yaml(v1, v2, TENANTS_FLIPPED))
    await wait_until(lambda: router.sample("dualstack_config_last_reload_success") == 1)
    assert router.sample("dualstack_config_generation") == 2


async def test_removing_a_tenant_stops_routing_it(upstreams: dict[str, Upstream],
                                                  make_router: RouterFactory) -> None:
    v1, v2 = upstreams["v1"].url, upstreams["v2"].url
    router = await make_router(routing_yaml(v1, v2, TENANTS_V1))
    save(router.config_path, routing_yaml(v1, v2, "other: {backend: v2}\n"))
    await wait_until(lambda: router.sample("dualstack_config_generation") == 2)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{router.url}/x", headers={"Host": "buatfilm.agentbar.ai"}) as response:
            assert response.status == 404
    assert router.registry.get_sample_value("dualstack_tenant_backend",
                                            {"tenant": "buatfilm", "backend": "v1"}) is None


# -- a hostile world: files that once killed the watcher, stalled the loop or loaded half-written ----

def billion_laughs(levels: int) -> str:
    lines = ["l0: &l0 [ha, ha, ha, ha, ha, ha, ha, ha, ha]"]
    lines += [f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]" for n in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def saving(content: str | bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        if isinstance(content, str):
            save(path, content)
        else:
            path.write_bytes(content)
    return write


def sparse(path: Path) -> None:
    os.truncate(path, 45 * 1024 * 1024)  # 45 MB that cost nothing to write


def fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {
    "self-alias": (saving("x: &a [*a]\n"), "aliases (*a) are not allowed"),
    "billion-laughs": (saving(billion_laughs(5)), "aliases (*l0) are not allowed"),
    "deep": (saving("a: " + "[" * 900 + "]" * 900 + "\n"), "nested deeper than 16 levels"),
    "5000-digits": (saving("a: " + "1" * 5000 + "\n"), "number of 5000 characters is too long"),
    "bad-timestamp": (saving("a: 2024-13-45\n"), "cannot be read as timestamp"),
    "nan-timeout": (saving(routing_yaml("http://a:1", "http://b:2", TENANTS_V1, timeouts=", read_timeout_s: .nan")),
                    "upstreams.v1.read_timeout_s: must be a finite number, got nan"),
    "not-utf8": (saving(b"a: caf\xe9\n"), "not UTF-8 text"),
    "huge": (sparse, "file too large"),
    "fifo": (fifo, "not a regular file (a FIFO)"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
async def test_the_watcher_outlives_every_hostile_file(
    upstreams: dict[str, Upstream], make_router: RouterFactory, kind: str
) -> None:
    """Each is a rejected reload with an issue; the next good file and SIGHUP still load."""
    v1, v2 = upstreams["v1"].url, upstreams["v2"].url
    router = await make_router(routing_yaml(v1, v2, TENANTS_V1))
    state = router.app[keys.STATE]
    write, fragment = HOSTILE[kind]
    path = router.config_path
    write(path)
    with fifo_unblocker(path) if kind == "fifo" else contextlib.nullcontext():
        await wait_until(lambda: router.sample("dualstack_config_last_reload_success") == 0)
    async with aiohttp.ClientSession() as session:
        async with session.get(router.admin.make_url("/routes")) as response:
            routes = await response.json()
        assert routes["last_reload"]["ok"] is False and routes["generation"] == 1
        assert any(fragment in issue for issue in routes["last_reload"]["issues"]), routes["last_reload"]
        async with session.get(f"{router.url}/x", headers={"Host": "buatfilm.agentbar.ai"}) as response:
            assert (await response.json())["backend"] == "v1"  # the last good config serves on

    path.unlink()
    save(path, routing_yaml(v1, v2, TENANTS_FLIPPED))
    await wait_until(lambda: router.sample("dualstack_config_generation") == 2)
    state.request_reload()  # SIGHUP: the same bytes, loaded again
    await wait_until(lambda: router.sample("dualstack_config_generation") == 3)
    assert router.sample("dualstack_config_last_reload_success") == 1


async def test_a_failing_reload_step_does_not_end_the_watcher(tmp_path: Path) -> None:
    """Whatever raises inside a reload (here: the swap hook) is a rejected reload, not a dead task."""
    path = tmp_path / "routing.yaml"
    save(path, routing_yaml("http://a:1", "http://b:2", TENANTS_V1))
    failures = [RuntimeError("pool gone")]

    def on_swap(_: RoutingTable) -> None:
        if failures:
            raise failures.pop()

    registry = CollectorRegistry()
    state = RouterState(ConfigFile(path, settle_s=0.01), ProxyMetrics(registry), on_swap=on_swap)
    tasks = TaskPool("test", limit=1)
    tasks.spawn(state.watch(0.02), name="config-watch")
    try:
        save(path, routing_yaml("http://a:1", "http://b:2", TENANTS_FLIPPED))
        await wait_until(lambda: not state.last_reload_ok)
        assert [str(i) for i in state.last_issues] == [f"{path}: (document): reload failed: RuntimeError: pool gone"]
        save(path, routing_yaml("http://a:1", "http://b:2", "buatfilm: {backend: v1}\n"))
        await wait_until(lambda: state.last_reload_ok and "other" not in state.table.routes)
        assert registry.get_sample_value("dualstack_config_last_reload_success") == 1
    finally:
        await tasks.close(timeout_s=0)


async def test_requests_are_answered_while_a_huge_file_is_loaded(
    upstreams: dict[str, Upstream], make_router: RouterFactory
) -> None:
    """Reading and parsing run in a thread: the loop keeps serving the old table meanwhile."""
    v1, v2 = upstreams["v1"].url, upstreams["v2"].url
    router = await make_router(routing_yaml(v1, v2, TENANTS_V1))
    state = router.app[keys.STATE]
    # 20,000 values to parse and check (about 400 KB), and a flip
    reserved = "".join(f"  - reserved-{n:05d}\n" for n in range(20_000))
    huge = routing_yaml(v1, v2, TENANTS_FLIPPED).replace("platform_subdomains: [funnel, funnelstaging, www, admin]\n",
                                                         "platform_subdomains:\n" + reserved)
    answered_while_loading: list[str] = []
    async with aiohttp.ClientSession() as session:
        save(router.config_path, huge)
        await wait_until(lambda: state.reloading_since_s is not None, timeout_s=10)
        while state.reloading_since_s is not None and len(answered_while_loading) < 20:
            async with session.get(f"{router.url}/x", headers={"Host": "buatfilm.agentbar.ai"}) as response:
                backend = (await response.json())["backend"]
            if state.reloading_since_s is not None:
                answered_while_loading.append(backend)
        await wait_until(lambda: state.table.generation == 2, timeout_s=30)
    assert answered_while_loading and set(answered_while_loading) == {"v1"}
    assert len(state.table.config.platform_subdomains) == 20_000


async def test_the_watcher_shows_when_it_last_ran(upstreams: dict[str, Upstream], make_router: RouterFactory) -> None:
    """A stuck or dead watcher is visible: its last run stops moving (and an alert fires)."""
    v1, v2 = upstreams["v1"].url, upstreams["v2"].url
    router = await make_router(routing_yaml(v1, v2, TENANTS_V1))
    first = router.sample("dualstack_config_watch_last_run_timestamp_seconds")
    assert first > 0
    await wait_until(lambda: router.sample("dualstack_config_watch_last_run_timestamp_seconds") > first)
    async with aiohttp.ClientSession() as session:
        async with session.get(router.admin.make_url("/routes")) as response:
            watcher = (await response.json())["watcher"]
    assert watcher["last_run_at_s"] > first and watcher["reloading_since_s"] is None


async def test_a_reload_touches_the_per_tenant_gauges_of_changed_tenants_only(tmp_path: Path) -> None:
    """At 10,000 tenants, writing every tenant's series on each reload cost seconds of the loop."""
    path = tmp_path / "routing.yaml"
    tenants = "watched: {backend: v2, shadow: {sample_rate: 0.1}}\nquiet: {backend: v1}\nmoving: {backend: v1}\n"
    save(path, routing_yaml("http://a:1", "http://b:2", tenants))
    registry = CollectorRegistry()
    metrics = ProxyMetrics(registry)
    state = RouterState(ConfigFile(path, settle_s=0.01), metrics)
    series = {"tenant": "watched", "backend": "v2"}
    assert registry.get_sample_value("dualstack_tenant_backend", series) == 1  # shadowed: it has its own series
    # A value no reload writes: a reload that rewrote this unchanged tenant's series would set it to 1.
    metrics.tenant_backend.labels("watched", "v2").set(7)
    save(path, routing_yaml("http://a:1", "http://b:2", tenants.replace("moving: {backend: v1}", "moving: {backend: v2}")))
    outcome = await state.reload()
    assert outcome is not None and outcome.ok and state.table.routes["moving"].backend == "v2"
    assert registry.get_sample_value("dualstack_tenant_backend", series) == 7
    assert registry.get_sample_value("dualstack_tenant_backend", {"tenant": "moving", "backend": "v2"}) == 1
    assert registry.get_sample_value("dualstack_tenant_backend", {"tenant": "quiet", "backend": "v1"}) is None
    assert registry.get_sample_value("dualstack_tenants", {"backend": "v2"}) == 2


async def test_a_file_with_thousands_of_problems_logs_a_few_and_counts_the_rest(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A tenant block pasted twice gives one duplicate-key problem per tenant: every worker logging each
    of them on its loop would stall it. A few are logged, the rest counted; /routes has them all."""
    path = tmp_path / "routing.yaml"
    tenants = "".join(f"  t{n}: {{backend: v1}}\n" for n in range(300))
    save(path, routing_yaml("http://a:1", "http://b:2", "buatfilm: {backend: v1}\n"))
    state = RouterState(ConfigFile(path, settle_s=0.01), ProxyMetrics(CollectorRegistry()))
    save(path, routing_yaml("http://a:1", "http://b:2", "buatfilm: {backend: v1}\n").rstrip("\n") + "\n"
         + tenants + tenants)
    caplog.clear()
    await state.reload(force=True)
    assert not state.last_reload_ok and len(state.last_issues) >= 300
    logged = [r.getMessage() for r in caplog.records if r.name == "proxy.router.state"]
    assert len(logged) == 1 + 20 + 1, logged
    assert logged[-1].startswith(f"... and {len(state.last_issues) - 20} more: `dualstack validate {path}`")

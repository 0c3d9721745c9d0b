"""`dualstack status` end to end: a real router (reading rollback locks from a real state database), a
second router address where nothing listens, and the table, the JSON and the HTML page (in headless
Chromium) it makes of them."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from controlplane.cli import ExitStatus, run
from controlplane.rollout.decide import Action, Decision, Memory, Verdict
from controlplane.state.rollouts import Phase, RolloutStore
from controlplane.state.schema import STATE_SCHEMA
from proxy.router.shadow_store import ShadowStore
from tests.conftest import Database, RouterFactory, Upstream, routing_yaml, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Fleet:
    args: list[str]
    rolled: str  # rolled back by `dualstack rollout rollback`: pinned to v1
    refused: str  # a hand-made lock to a v1 that does not hold it: the router refuses it
    soaking: str  # on v2, soaking for two hours, its last decision recorded
    steady: str  # on v1, shadowed to v2
    dead_router: str


@pytest.fixture
async def fleet(upstreams: dict[str, Upstream], make_router: RouterFactory, state: Database,
                free_port: Any) -> Any:
    suffix = secrets.token_hex(3)
    rolled, refused, soaking, steady = (f"{name}-{suffix}" for name in ("rolled", "refused", "soaking", "steady"))
    yaml = routing_yaml(upstreams["v1"].url, upstreams["v2"].url,
                        f"{rolled}: {{backend: v2}}\n{refused}: {{backend: v2}}\n{soaking}: {{backend: v2}}\n"
                        f"{steady}: {{backend: v1, shadow: {{sample_rate: 1.0}}}}\n",
                        v1_tenants=[rolled, soaking, steady])
    router = await make_router(yaml, state_database_url=state.router_url)
    dead_router = f"http://127.0.0.1:{free_port()}"
    args = ["--config", str(router.config_path), "--state-database-url", state.control_url,
            "--router-admin-url", str(router.admin.make_url("")).rstrip("/"), "--router-admin-url", dead_router]
    assert await asyncio.to_thread(run, ["rollout", "rollback", rolled, "--reason", "v2 error rate 5%",
                                         "--config", str(router.config_path), "--state-database-url",
                                         state.control_url]) == ExitStatus.OK
    with psycopg.connect(state.admin_url) as conn:
        conn.execute(f"INSERT INTO {STATE_SCHEMA}.rollout_locks (tenant, backend, declared_backend, reason, actor) "
                     "VALUES (%s, 'v1', 'v2', 'hand-made', 'someone')", (refused,))
    store = RolloutStore(state.control_url, STATE_SCHEMA)
    store.save(soaking, Phase.SOAKING, datetime.now(UTC) - timedelta(hours=2), Memory())
    store.record(soaking, Decision(Action.CONTINUE, Verdict.INCONCLUSIVE, ("soaking: 2 h of 24 h, no harm seen",)),
                 dry_run=False)
    shadow = ShadowStore(state.router_url, STATE_SCHEMA)
    await shadow.open()
    for i in range(50):
        shadow.record(steady, "GET /orders/{id}/status", "mismatch" if i < 2 else "match", 0.003, 0.004, (), "",
                      primary_backend="v1")
    await shadow.close()
    await wait_until(lambda: router.sample("dualstack_tenant_backend", tenant=rolled, backend="v1") == 1
                     and router.sample("dualstack_rollout_locks_refused") == 1)
    yield Fleet(args, rolled, refused, soaking, steady, dead_router)
    with psycopg.connect(state.admin_url) as conn:
        conn.execute(f"DELETE FROM {STATE_SCHEMA}.rollout_locks WHERE tenant = ANY(%s)", ([rolled, refused],))


async def test_the_table_and_the_json_show_every_tenant_and_the_router_that_did_not_answer(
        fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert await asyncio.to_thread(run, ["status", *fleet.args]) == ExitStatus.ENVIRONMENT  # partial
    out, err = capsys.readouterr()
    lines = out.splitlines()
    rows = {line.split()[1]: line.split() for line in lines if line.split()[1:2] and "-" in line.split()[1]}
    assert [line.split()[1] for line in lines[3:7]] == [fleet.refused, fleet.rolled, fleet.soaking, fleet.steady]
    assert rows[fleet.refused][:4] == ["refused_lock", fleet.refused, "v2", "v2"]
    assert rows[fleet.rolled][:5] == ["rollback", fleet.rolled, "v2", "v1", "-"]
    assert rows[fleet.soaking][:6] == ["soaking", fleet.soaking, "v2", "v2", "soaking", "8%"]
    assert rows[fleet.steady][:7] == ["steady", fleet.steady, "v1", "v1", "-", "-", "96.0%/50"]
    assert all(len(line) <= 120 for line in lines[2:7])
    assert f"FAILED  router {fleet.dead_router}: /routes: connection refused" in out
    assert f"could not read router {fleet.dead_router}" in err and "Traceback" not in err

    assert await asyncio.to_thread(run, ["status", "--json", *fleet.args]) == ExitStatus.ENVIRONMENT
    data = json.loads(capsys.readouterr().out)
    assert data["complete"] is False
    sources = {(s["kind"], s["where"]): s for s in data["sources"]}
    assert sources[("router", fleet.dead_router)]["ok"] is False
    assert [s["ok"] for s in data["sources"] if s["kind"] in ("routing_file", "state_database")] == [True, True]
    assert sources[("prometheus", "-")]["ok"] is None  # not asked: not a failure
    tenants = {t["tenant"]: t for t in data["tenants"]}
    rolled = tenants[fleet.rolled]
    assert (rolled["declared"], rolled["effective"], rolled["effective_from"]) == ("v2", "v1", "routers")
    assert rolled["lock"]["reason"] == "v2 error rate 5%" and "v2 error rate 5%" in rolled["reasons"][0]
    refused = tenants[fleet.refused]
    assert refused["effective"] == "v2" and "v1 does not hold" in refused["lock"]["refused"]
    soaking = tenants[fleet.soaking]
    assert soaking["phase"] == "soaking" and soaking["soak"]["window_s"] == 24 * 3600
    assert 0.08 <= soaking["soak"]["progress"] < 0.1 and soaking["soak"]["remaining_s"] > 21 * 3600
    assert soaking["last_decision"]["action"] == "continue"
    assert soaking["last_decision"]["reason"] == "soaking: 2 h of 24 h, no harm seen"
    assert tenants[fleet.steady]["shadow"]["match_rate"] == 48 / 50  # matchrate.py's: matches / judged


# Chromium's own services (clock, updates, accounts): it asks them whatever page it shows.
BROWSER_OWN = ("google.com", "googleapis.com", "gstatic.com")


@dataclass
class Shown:
    dom: str
    stderr: str
    hosts: list[str]  # every host the page asked for, through the counting proxy


async def show_in_chromium(page: Path, profile: Path) -> Shown:
    """The page in headless Chromium, every request it makes going through a proxy that only notes the host."""
    assert CHROMIUM is not None
    hosts: list[str] = []

    async def note(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = (await reader.readline()).decode("latin-1").split()
        if len(request_line) >= 2:
            target = request_line[1]
            hosts.append((target.split("//", 1)[-1] if "//" in target else target).split("/")[0].split(":")[0])
        writer.close()

    proxy = await asyncio.start_server(note, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]
    try:
        result = await asyncio.to_thread(subprocess.run, [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--proxy-server=http://127.0.0.1:{port}", "--proxy-bypass-list=<-loopback>",
            f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
            "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60, check=False)
    finally:
        proxy.close()
        await proxy.wait_closed()
    assert result.returncode == 0, result.stderr[-2000:]
    return Shown(result.stdout, result.stderr,
                 [h for h in hosts if not any(h == d or h.endswith("." + d) for d in BROWSER_OWN)])


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
async def test_the_html_page_shows_the_tenants_in_chromium_without_an_outside_request(
        fleet: Fleet, tmp_path: Path) -> None:
    # The check sees a page's requests: a page with one outside image is caught.
    control = tmp_path / "control.html"
    control.write_text('<!doctype html><title>x</title><img src="http://assets.example.test/logo.png">')
    assert (await show_in_chromium(control, tmp_path / "profile-control")).hosts == ["assets.example.test"]

    page = tmp_path / "status.html"
    assert await asyncio.to_thread(run, ["status", "--html", str(page), *fleet.args]) == ExitStatus.ENVIRONMENT
    shown = await show_in_chromium(page, tmp_path / "profile")
    for tenant in (fleet.refused, fleet.rolled, fleet.soaking, fleet.steady):
        assert f"<code>{tenant}</code>" in shown.dom
    assert shown.dom.index(fleet.refused) < shown.dom.index(fleet.rolled) < shown.dom.index(fleet.steady)
    assert 'id="partial"' in shown.dom and fleet.dead_router in shown.dom
    assert shown.hosts == [] and "Refused to load" not in shown.stderr


async def test_firing_alerts_come_from_a_real_prometheus(fleet: Fleet, prometheus: Any, upstreams: dict[str, Upstream],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    admin = next(arg for arg in fleet.args if arg.startswith("http://") and arg != fleet.dead_router)
    base = await prometheus([admin.split("//", 1)[1]])
    # DualstackRolloutLockRefused (no `for:`) fires once Prometheus has scraped the router's refusal.
    async with aiohttp.ClientSession() as session:
        async def firing() -> bool:
            async with session.get(f"{base}/api/v1/alerts") as response:
                alerts = (await response.json())["data"]["alerts"]
            return any(a["labels"]["alertname"] == "DualstackRolloutLockRefused" and a["state"] == "firing"
                       for a in alerts)

        for _ in range(600):  # a bound that only stops a broken test hanging
            if await firing():
                break
            await asyncio.sleep(0.1)
    capsys.readouterr()
    assert await asyncio.to_thread(run, ["status", "--json", "--prometheus-url", base, *fleet.args]) == \
        ExitStatus.ENVIRONMENT  # the dead router still makes it partial
    data = json.loads(capsys.readouterr().out)
    [source] = [s for s in data["sources"] if s["kind"] == "prometheus"]
    assert source["ok"] is True and source["where"] == base
    [alert] = [a for a in data["fleet_alerts"] if a["name"] == "DualstackRolloutLockRefused"]
    assert alert["severity"] == "page" and alert["tenant"] is None and "refuses a rollback lock" in alert["summary"]

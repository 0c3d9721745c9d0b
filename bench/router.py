"""Router overhead, measured side by side in one run: direct to the upstream, nginx proxy_pass, and
the dualstack router, all in front of the same upstream.

Prints req/s, p50/p99 latency, the proxy's CPU microseconds per request (user + system time of the
proxy's whole process tree, from /proc) and the ratios. Load comes from wrk when installed, else
from a small built-in aiohttp load generator (less precise: it shares the CPU).

    .venv/bin/python bench/router.py [--duration 5] [--connections 50] [--workers 2]

Traffic stays on 127.0.0.1; every run is bounded by --duration.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from controlplane.processes import Child, ProcessGroup

CLK_TCK = os.sysconf("SC_CLK_TCK")
BODY = '{"success":true,"order":{"id":"ORDER-1","status":"PAID"}}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (live ones)."""
    total = 0.0
    pids = [pid]
    seen = set()
    while pids:
        current = pids.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (OSError, IndexError):
            continue
        pids.extend(int(c) for c in children)
    return total


def wait_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def start_nginx(group: ProcessGroup, workdir: Path, name: str, server_block: str, workers: int) -> Child:
    prefix = workdir / name
    (prefix / "logs").mkdir(parents=True)
    conf = prefix / "nginx.conf"
    conf.write_text(textwrap.dedent(f"""\
        daemon off;
        worker_processes {workers};
        pid {prefix}/nginx.pid;
        error_log {prefix}/logs/error.log warn;
        events {{ worker_connections 4096; }}
        http {{
            access_log off;
            client_body_temp_path {prefix}/body;
            proxy_temp_path {prefix}/proxy;
            fastcgi_temp_path {prefix}/fastcgi;
            uwsgi_temp_path {prefix}/uwsgi;
            scgi_temp_path {prefix}/scgi;
            {server_block}
        }}
        """))
    binary = nginx_binary()
    assert binary is not None
    return group.start(f"nginx-{name}", [binary, "-p", str(prefix), "-c", str(conf)])


def launch_router(group: ProcessGroup, name: str, config: Path, port: int, admin: int, *, workers: int,
                  event_loop: str = "uvloop", extra: tuple[str, ...] = (),
                  metrics_dir: Path | None = None) -> Child:
    """Start `python -m proxy.router` (not waiting for it); its multiprocess metrics files go to
    `metrics_dir` if given, else to a folder of the supervisor's own."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if metrics_dir is not None:
        metrics_dir.mkdir(parents=True, exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    return group.start(name, [
        sys.executable, "-m", "proxy.router", "--config", str(config), "--listen", f"127.0.0.1:{port}",
        "--admin-listen", f"127.0.0.1:{admin}", "--workers", str(workers), "--log-level", "WARNING",
        "--event-loop", event_loop, *extra], env)


@dataclass
class Result:
    name: str
    connections: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    proxy_cpu_us: float | None  # per request


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    assert match, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(url: str, connections: int, duration_s: float, host: str,
            script: str | None = None) -> tuple[int, float, float, float, int]:
    extra = ["-s", script] if script else []
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{max(1, round(duration_s))}s", "--latency",
         "-H", f"Host: {host}", *extra, url],
        capture_output=True, text=True, check=True, timeout=duration_s + 30).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors += sum(int(g) for g in match.groups())
    return requests, rps, p50, p99, errors


def run_builtin(url: str, connections: int, duration_s: float, host: str) -> tuple[int, float, float, float, int]:
    import aiohttp

    async def main() -> tuple[int, float, float, float, int]:
        latencies: list[float] = []
        errors = 0
        deadline = time.monotonic() + duration_s
        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def worker() -> None:
                nonlocal errors
                while time.monotonic() < deadline:
                    started = time.perf_counter()
                    async with session.get(url, headers={"Host": host}) as response:
                        await response.read()
                        if response.status != 200:
                            errors += 1
                    latencies.append((time.perf_counter() - started) * 1000)

            started = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(connections)))
            elapsed = time.monotonic() - started
        latencies.sort()
        n = len(latencies)
        return n, n / elapsed, latencies[n // 2], latencies[min(n - 1, int(n * 0.99))], errors

    return asyncio.run(main())


def measure(name: str, url: str, connections: int, duration_s: float, proxy_pid: int | None,
            host: str = "buatfilm.agentbar.ai") -> Result:
    load = run_wrk if shutil.which("wrk") else run_builtin
    load(url, connections, 1.0, host)  # warm up pools and caches
    cpu_before = tree_cpu_s(proxy_pid) if proxy_pid else 0.0
    requests, rps, p50, p99, errors = load(url, connections, duration_s, host)
    cpu = (tree_cpu_s(proxy_pid) - cpu_before) if proxy_pid else None
    per_request = cpu / requests * 1e6 if cpu is not None and requests else None
    return Result(name, connections, requests, rps, p50, p99, errors, per_request)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="router and nginx worker processes")
    parser.add_argument("--event-loop", choices=["uvloop", "asyncio"], default="uvloop",
                        help="the router's event loop")
    parser.add_argument("--shadow", action="store_true",
                        help="also measure a router that mirrors 100%% of requests (to the same upstream)")
    ns = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="dualstack-bench-"))
    group = ProcessGroup(str(workdir))
    try:
        up_port, nginx_port, router_port, admin_port = (free_port() for _ in range(4))
        if nginx_binary():
            start_nginx(group, workdir, "upstream", f"""
            server {{ listen 127.0.0.1:{up_port}; keepalive_requests 100000;
                      location / {{ default_type application/json; return 200 '{BODY}'; }} }}""", 1)
            upstream_kind = "nginx return 200 (1 worker)"
        else:
            group.start("upstream", [sys.executable, "-m", "standins.echo", "--name", "v1",
                                     "--listen", f"127.0.0.1:{up_port}"])
            upstream_kind = "aiohttp echo backend"
        wait_port(up_port)

        nginx_proxy = None
        if nginx_binary():
            nginx_proxy = start_nginx(group, workdir, "proxy", f"""
            upstream v1 {{ server 127.0.0.1:{up_port}; keepalive 64; }}
            server {{ listen 127.0.0.1:{nginx_port}; keepalive_requests 100000;
                      location / {{ proxy_pass http://v1; proxy_http_version 1.1;
                                   proxy_set_header Connection "";
                                   proxy_set_header X-Tenant-Slug buatfilm; }} }}""", ns.workers)
            wait_port(nginx_port)

        routing = workdir / "routing.yaml"
        routing.write_text(textwrap.dedent(f"""\
            upstreams:
              v1: {{url: "http://127.0.0.1:{up_port}", tenants: [buatfilm]}}
              v2: {{url: "http://127.0.0.1:{up_port}"}}
            base_domain: agentbar.ai
            tenants:
              buatfilm: {{backend: v1}}
            """))

        def start_router(name: str, config: Path, port: int, admin: int) -> Child:
            child = launch_router(group, name, config, port, admin, workers=ns.workers, event_loop=ns.event_loop)
            wait_port(port)
            return child

        router = start_router("router", routing, router_port, admin_port)
        shadow_router = None
        if ns.shadow:
            shadowed = workdir / "routing-shadow.yaml"
            shadowed.write_text(routing.read_text().replace("buatfilm: {backend: v1}",
                                                            "buatfilm: {backend: v1, shadow: {noise_sample_rate: 0}}"))
            shadow_port, shadow_admin = free_port(), free_port()
            shadow_router = start_router("router-shadow", shadowed, shadow_port, shadow_admin)
        time.sleep(1.0)  # let every worker finish starting

        results: list[Result] = []
        for connections in (ns.connections, 1):
            results.append(measure("direct", f"http://127.0.0.1:{up_port}/orders/ORDER-1/status",
                                   connections, ns.duration, None))
            if nginx_proxy is not None:
                results.append(measure("nginx", f"http://127.0.0.1:{nginx_port}/orders/ORDER-1/status",
                                       connections, ns.duration, nginx_proxy.process.pid))
            results.append(measure("router", f"http://127.0.0.1:{router_port}/orders/ORDER-1/status",
                                   connections, ns.duration, router.process.pid))
            if shadow_router is not None and connections > 1:
                results.append(measure("shadow", f"http://127.0.0.1:{shadow_port}/orders/ORDER-1/status",
                                       connections, ns.duration, shadow_router.process.pid))
        report(results, upstream_kind, ns)
        if shadow_router is not None:
            print(f"\nshadow copies (whole run, warm-ups included): {shadow_outcomes(shadow_admin)}")
        return 0
    finally:
        group.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def shadow_outcomes(admin_port: int) -> str:
    """What became of the copies: sent (answered and compared), dropped, error, timeout."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    counts = {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^dualstack_shadow_requests_total\{[^}]*result="(\w+)"[^}]*\} (\S+)$', text, re.M)}
    return ", ".join(f"{k} {v:,.0f}" for k, v in sorted(counts.items())) or "none recorded"


def report(results: list[Result], upstream_kind: str, ns: argparse.Namespace) -> None:
    print(f"\nupstream: {upstream_kind}; load: {'wrk' if shutil.which('wrk') else 'built-in'}, "
          f"{ns.duration:g}s per run; proxies: {ns.workers} worker processes; router loop: {ns.event_loop}; "
          f"{os.cpu_count()} cores\n")
    print(f"{'target':8} {'conns':>5} {'requests':>9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>6} {'proxy CPU us/req':>17}")
    for r in results:
        cpu = f"{r.proxy_cpu_us:.1f}" if r.proxy_cpu_us is not None else "-"
        print(f"{r.name:8} {r.connections:5d} {r.requests:9d} {r.rps:9.0f} {r.p50_ms:8.3f} {r.p99_ms:8.3f} "
              f"{r.errors:6d} {cpu:>17}")
    by = {(r.name, r.connections): r for r in results}
    print("\nratios:")
    for connections in sorted({r.connections for r in results}, reverse=True):
        direct, router, nginx = (by.get((n, connections)) for n in ("direct", "router", "nginx"))
        if router and nginx:
            print(f"  {connections:>3} conns: router/nginx throughput {router.rps / nginx.rps:.2f}x")
            if router.proxy_cpu_us and nginx.proxy_cpu_us:
                print(f"             router/nginx CPU per request {router.proxy_cpu_us / nginx.proxy_cpu_us:.1f}x")
        shadow = by.get(("shadow", connections))
        if router and shadow and router.proxy_cpu_us and shadow.proxy_cpu_us:
            print(f"             100% shadowing / none: CPU per request {shadow.proxy_cpu_us / router.proxy_cpu_us:.2f}x"
                  f", throughput {shadow.rps / router.rps:.2f}x")
        if router and direct:
            print(f"             router/direct throughput {router.rps / direct.rps:.2f}x; "
                  f"added p50 {(router.p50_ms - direct.p50_ms) * 1000:.0f} us"
                  + (f" (nginx: {(nginx.p50_ms - direct.p50_ms) * 1000:.0f} us)" if nginx else ""))


if __name__ == "__main__":
    sys.exit(main())

"""Rendering nginx includes for many tenants: render time, apply's probe plan, and real `nginx -t`
on the output; then, with a real nginx serving them on a loopback port (a scratch prefix), the
first `apply` (over the folder as ops wrote it) and the apply of one tenant flipped (render --diff,
check and apply as ops run them, one after the other): seconds, and how many files each apply wrote.

    .venv/bin/python bench/nginx_render.py [--tenants 10000] [--no-apply] [--reload-by-signal]

Bounded: every nginx call and the reload's verification have timeouts.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from controlplane.config import RoutingConfig, load_config_text
from controlplane.render.apply import apply, live_version
from controlplane.render.nginx import VERSION_PATH, render
from controlplane.render.nginx_check import check, nginx_binary, wrapper_config
from controlplane.render.probe import site_probes


def routing(tenants: int, nginx: str = "access_log: /tmp/dualstack-bench-access.log") -> str:
    # v1 is single-tenant: the one tenant it holds is declared, and every other tenant is on v2.
    lines = ['upstreams: {v1: {url: "http://127.0.0.1:3002", tenants: [tenant-00000]}, v2: {url: "http://127.0.0.1:3010"}}',
             "base_domain: agentbar.ai", "platform_subdomains: [funnel, funnelstaging, www, admin]",
             f"nginx: {{{nginx}}}", "tenants:"]
    sites = ["", ", site: {mode: static, root: '/var/www/{slug}/dist'}",
             ", site: {mode: upstream, url: 'http://127.0.0.1:5173'}"]  # snippet (the default), static, upstream
    for i in range(tenants):
        via = ", via: direct" if i % 5 == 0 else ""
        hosts = f", hosts: [shop{i}.example.com]" if i % 3 == 0 else ""
        backend = "v1" if i == 0 else "v2"  # v1 is single-tenant: it holds one tenant's orders
        lines.append(f"  tenant-{i:05d}: {{backend: {backend}{hosts}{via}{sites[i % 7 % 3]}}}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--no-apply", action="store_true", help="skip the applies to a real nginx")
    parser.add_argument("--reload-by-signal", action="store_true",
                        help="reload as apply does by default (SIGHUP to the master named by the main config's "
                        "pid file) instead of with --reload-command `nginx -s reload`")
    ns = parser.parse_args()
    if ns.tenants < 1:
        parser.error("--tenants must be at least 1")
    text = routing(ns.tenants)
    started = time.perf_counter()
    config = load_config_text(text, "bench.yaml")
    loaded = time.perf_counter()
    rendering = render(config, "/etc/nginx/dualstack")
    rendered = time.perf_counter()
    size = sum(len(t) for t in rendering.files.values())
    print(f"{ns.tenants} tenants: load+validate {loaded - started:.2f}s, render {rendered - loaded:.2f}s "
          f"({len(rendering.files)} files, {size / 1e6:.1f} MB)")
    plan = site_probes(config, seed=rendering.version)
    print(f"apply's site probes: {plan.describe()}")
    started = time.perf_counter()
    checked = check(config)
    print(f"nginx -t on the rendered files (wrapper config, temporary prefix): OK in "
          f"{time.perf_counter() - started:.2f}s (includes rendering again and writing the files; "
          f"{len(checked.rendering.files)} files)")
    if not ns.no_apply:
        with tempfile.TemporaryDirectory(prefix="dualstack-bench-nginx-") as tmp:
            applies(ns.tenants, Path(tmp), ns.reload_by_signal)
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def applies(tenants: int, prefix: Path, by_signal: bool) -> None:
    port = free_port()
    nginx_section = f"access_log: {prefix}/access.log, listen_ports: [{port}]"
    text = routing(tenants, nginx_section)
    flipped = text.replace("tenant-00000: {backend: v1", "tenant-00000: {backend: v2", 1)
    assert flipped != text
    live, conf = prefix / "dualstack", prefix / "nginx.conf"
    (prefix / "temp").mkdir()
    render(load_config_text(text, "bench.yaml"), live).write(live)  # what ops had before the first apply
    conf.write_text(wrapper_config(prefix, live).replace("worker_connections 64;", "worker_connections 1024;"))
    nginx = [nginx_binary(), "-p", str(prefix), "-c", str(conf)]
    process = subprocess.Popen([*nginx, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}{VERSION_PATH}"
        # apply's default (None): SIGHUP to the master its main config's pid file names; `nginx -s reload`
        # parses the whole config again only to find that pid
        reload = None if by_signal else [*nginx, "-s", "reload"]
        deadline = time.monotonic() + 60
        while live_version(url, "funnel.agentbar.ai") is None:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"nginx did not answer at {url} within 60 s (see {prefix}/error.log)")
            time.sleep(0.2)

        def applied(config: RoutingConfig) -> tuple[float, str]:
            started = time.perf_counter()
            report = apply(config, live, reload_command=reload, main_config=conf, verify_url=url, verify_timeout_s=30.0)
            wrote = next(step for step in report.steps if step.startswith("rendered version"))
            return time.perf_counter() - started, wrote[wrote.index("(") + 1:wrote.index(";")]

        first_s, first_wrote = applied(load_config_text(text, "bench.yaml"))
        print(f"first apply (a real nginx, {tenants} tenants): {first_s:.2f}s, {first_wrote}")
        time.sleep(2.1)  # apply spaces reloads 2 s apart; not part of the figure
        started = time.perf_counter()
        config = load_config_text(flipped, "bench.yaml")
        loaded = time.perf_counter()
        render(config, live).diff(live)
        rendered = time.perf_counter()
        check(config)
        checked_at = time.perf_counter()
        apply_s, wrote = applied(config)
        total = time.perf_counter() - started
        print(f"one tenant flipped ({'SIGHUP' if by_signal else 'nginx -s reload'}): load {loaded - started:.2f}s + render --diff {rendered - loaded:.2f}s + check "
              f"(nginx -t) {checked_at - rendered:.2f}s + apply {apply_s:.2f}s ({wrote}) = {total:.2f}s")
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(prefix / "dualstack.releases", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

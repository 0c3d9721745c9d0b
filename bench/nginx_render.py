"""Rendering nginx includes for many tenants: render time, and real `nginx -t` on the output.

    .venv/bin/python bench/nginx_render.py [--tenants 10000]
"""

from __future__ import annotations

import argparse
import sys
import time

from controlplane.config import load_config_text
from controlplane.render.apply import check
from controlplane.render.nginx import render


def routing(tenants: int) -> str:
    lines = ['upstreams: {v1: {url: "http://127.0.0.1:3002"}, v2: {url: "http://127.0.0.1:3010"}}',
             "base_domain: agentbar.ai", "platform_subdomains: [funnel, funnelstaging, www, admin]",
             "nginx: {access_log: /tmp/dualstack-bench-access.log}", "tenants:"]
    for i in range(tenants):
        via = ", via: direct" if i % 5 == 0 else ""
        hosts = f", hosts: [shop{i}.example.com]" if i % 3 == 0 else ""
        lines.append(f"  tenant-{i:05d}: {{backend: v{1 + i % 2}{hosts}{via}}}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=10_000)
    ns = parser.parse_args()
    text = routing(ns.tenants)
    started = time.perf_counter()
    config = load_config_text(text, "bench.yaml")
    loaded = time.perf_counter()
    rendering = render(config, "/etc/nginx/dualstack")
    rendered = time.perf_counter()
    size = sum(len(t) for t in rendering.files.values())
    print(f"{ns.tenants} tenants: load+validate {loaded - started:.2f}s, render {rendered - loaded:.2f}s "
          f"({len(rendering.files)} files, {size / 1e6:.1f} MB)")
    started = time.perf_counter()
    check(config)
    print(f"nginx -t on the rendered files (wrapper config, temporary prefix): OK in "
          f"{time.perf_counter() - started:.2f}s (includes rendering again and writing the files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

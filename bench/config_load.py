"""Loading routing files: CPU per file size, and what hostile files cost before they are refused.

    .venv/bin/python bench/config_load.py [--tenants 1000 10000]
"""

from __future__ import annotations

import argparse
import sys
import time

from controlplane.config import ConfigError, load_config_text

# v1 is single-tenant: the one tenant it holds is declared, and every other tenant is on v2.
BASE = ('upstreams: {v1: {url: "http://a:1", tenants: [tenant-000000]}, v2: {url: "http://b:2"}}\n'
        "base_domain: agentbar.ai\n")


def routing(tenants: int) -> str:
    return BASE + "tenants:\n" + "".join(
        f"  tenant-{i:06d}:\n    backend: v{1 if i == 0 else 2}\n    hosts: [shop-{i}.example.com]\n"
        "    shadow: {sample_rate: 0.5}\n" for i in range(tenants))


def laughs(levels: int) -> str:
    lines = ["l0: &l0 [ha, ha, ha, ha, ha, ha, ha, ha, ha]"]
    lines += [f"l{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]" for n in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


HOSTILE = {
    "self-alias (13 B)": "x: &a [*a]\n",
    "billion laughs (9 levels)": laughs(9),
    "[ x 900": "a: " + "[" * 900 + "]" * 900 + "\n",
    "5000-digit integer": "a: " + "1" * 5000 + "\n",
    "1 MiB list of zeros": "a: [" + "0," * 524_000 + "0]\n",
}


def cpu_s(text: str) -> tuple[float, str]:
    started = time.process_time()
    try:
        config = load_config_text(text, "bench.yaml")
        outcome = config.summary()
    except ConfigError as exc:
        outcome = str(exc.issues[0])[:90]
    return time.process_time() - started, outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, nargs="*", default=[1000, 10_000])
    args = parser.parse_args()
    for tenants in args.tenants:
        text = routing(tenants)
        seconds, outcome = cpu_s(text)
        print(f"{tenants:>6} tenants, {len(text) / 1024:7.0f} KiB: {seconds:6.3f} s CPU  ({outcome})")
    for name, text in HOSTILE.items():
        seconds, outcome = cpu_s(text)
        print(f"{name:>28}: {seconds:6.3f} s CPU  {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

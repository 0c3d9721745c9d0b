"""The local demo: the whole stack on embedded defaults, stopped cleanly with Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from controlplane.config import load_config
from controlplane.errors import EnvironmentProblem
from controlplane.processes import ProcessFailed, ProcessGroup, port_is_free

DEMO_ROUTING = """\
# The demo's routing file. Edit it while the demo runs: flip a tenant's backend and save, and the
# router picks it up within 2 seconds. Break it on purpose, and the router keeps the last good
# version and says what is wrong (see the router's log, and /routes on the admin port).
upstreams:
  v1: {{url: "http://127.0.0.1:{v1}"}}
  v2: {{url: "http://127.0.0.1:{v2}"}}
base_domain: agentbar.ai
platform_subdomains: [funnel, funnelstaging, www, admin]
trusted_proxies: ["127.0.0.1/32", "::1/128"]
tenants:
  buatfilm:
    backend: v1
    hosts: [buatfilm.agentbar.ai]
  demo:
    backend: v2
"""


def run_demo(*, state_dir: str, router_port: int, workers: int) -> int:
    state = Path(state_dir).resolve()
    (state / "logs").mkdir(parents=True, exist_ok=True)
    ports = {"v1": 3002, "v2": 3010, "router": router_port, "admin": router_port + 1020}
    busy = [f"{name} port {port}" for name, port in ports.items() if not port_is_free("127.0.0.1", port)]
    if busy:
        raise EnvironmentProblem(", ".join(busy) + " already in use; stop what uses it, or pass --port")
    routing = state / "routing.yaml"
    if not routing.exists():
        routing.write_text(DEMO_ROUTING.format(v1=ports["v1"], v2=ports["v2"]))
    load_config(routing)  # a broken file left from an earlier run is reported before anything starts

    _stop_on_signals()
    group = ProcessGroup(str(state / "logs"))
    python = sys.executable
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        for name in ("v1", "v2"):
            child = group.start(f"backend-{name}", [python, "-m", "proxy.echo", "--name", name,
                                                    "--listen", f"127.0.0.1:{ports[name]}"], env)
            group.wait_http_ok(child, f"http://127.0.0.1:{ports[name]}/health")
        router = group.start("router", [
            python, "-m", "proxy", "--config", str(routing), "--listen", f"127.0.0.1:{ports['router']}",
            "--admin-listen", f"127.0.0.1:{ports['admin']}", "--workers", str(workers),
        ], env)
        group.wait_http_ok(router, f"http://127.0.0.1:{ports['admin']}/readyz")
        print(_guide(routing, ports, state), flush=True)
        while (exited := group.first_exited()) is None:
            time.sleep(0.5)
        print(f"\n{exited.name} stopped unexpectedly (code {exited.process.returncode}):\n{exited.tail()}",
              file=sys.stderr)
        return 1
    except ProcessFailed as exc:
        print(f"dualstack demo: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("\nstopping (in-flight requests are drained first)...", flush=True)
        return 0
    finally:
        group.stop()


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both stop the demo cleanly, even when started with SIGINT ignored
    (as a background job of a script is)."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def _guide(routing: Path, ports: dict[str, int], state: Path) -> str:
    r, a = ports["router"], ports["admin"]
    return f"""
dualstack demo is running. Ctrl-C stops everything.

  router         http://127.0.0.1:{r}        (2 workers, SO_REUSEPORT)
  admin          http://127.0.0.1:{a}/routes  /metrics  /healthz  /readyz
  backend v1     http://127.0.0.1:{ports['v1']}        (echo backend: answers with what it received)
  backend v2     http://127.0.0.1:{ports['v2']}
  routing file   {routing}
  logs           {state / 'logs'}

Try:
  curl -s -H 'Host: buatfilm.agentbar.ai' http://127.0.0.1:{r}/orders/ORDER-1/status
  curl -s -H 'Host: demo.agentbar.ai'     http://127.0.0.1:{r}/health
  curl -s 'http://127.0.0.1:{r}/health?tenant=buatfilm'
  curl -s -H 'Host: nobody.agentbar.ai'   http://127.0.0.1:{r}/health        # 404, never forwarded
  curl -s http://127.0.0.1:{a}/routes

Flip buatfilm to v2: edit {routing.name}, set `backend: v2` under buatfilm, save, and repeat the
first curl within 2 seconds. Save a broken file and the router keeps the last good one:
  dualstack validate {routing}
"""

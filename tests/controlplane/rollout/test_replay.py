"""`dualstack rollout replay` against a real Prometheus holding synthetic history.

The history is written as OpenMetrics, turned into TSDB blocks by `promtool tsdb create-blocks-from
openmetrics`, and served by a Prometheus started on that data directory: the replay's queries see
exactly what a Prometheus would have held at each step.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable

import pytest

from controlplane.cli import ExitStatus, run
from controlplane.rollout.sampling import poisson

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None or shutil.which("promtool") is None,
                                reason="prometheus and promtool are needed")

START = (int(time.time()) // 3600 - 5) * 3600  # whole hours, in the past, so the blocks are history
SCRAPE_S = 15


def series(tenant: str, backend: str, route: str, code: str, per_scrape: Callable[[float], float],
           rng: random.Random, *, reset_at: float | None = None) -> list[str]:
    """One counter sampled every 15 s for 3 hours; `reset_at`: the router restarts (counts from zero)."""
    lines, value = [], 0
    labels = f'backend="{backend}",code_class="{code}",route="{route}",tenant="{tenant}"'
    for step in range(3 * 3600 // SCRAPE_S):
        t = START + step * SCRAPE_S
        if reset_at is not None and t == reset_at:
            value = 0
        value += poisson(rng, per_scrape(t))
        lines.append(f"dualstack_requests_total{{{labels}}} {value} {t}")
    return lines


def history(*, regression_at: float | None, reset_at: float | None) -> str:
    """15 reads and 5 writes a minute on v2 (tenant shop) and on v1 (tenant other); from `regression_at`
    v2 fails 20 % of reads."""
    rng = random.Random(3)

    def steady(rate: float) -> Callable[[float], float]:
        return lambda t: rate

    def v2_errors(t: float) -> float:
        return 0.75 if regression_at is not None and t >= regression_at else 0.0

    out = ["# HELP dualstack_requests Requests answered.", "# TYPE dualstack_requests counter"]
    for tenant, backend in (("shop", "v2"), ("other", "v1")):
        reset = reset_at if backend == "v2" else None
        out += series(tenant, backend, "read", "2xx", steady(3.75), rng, reset_at=reset)
        out += series(tenant, backend, "write", "2xx", steady(1.25), rng, reset_at=reset)
        out += series(tenant, backend, "read", "5xx", v2_errors if backend == "v2" else steady(0.0), rng,
                      reset_at=reset)
    return "\n".join(out) + "\n# EOF\n"


def replay(base: str, *extra: str) -> list[str]:
    return ["rollout", "replay", "shop", "--prometheus-url", base, "--soak-start", str(START), *extra]


def test_a_regression_is_replayed_to_the_rollback_it_would_have_caused(
    prometheus_on: object, capsys: pytest.CaptureFixture[str]
) -> None:
    regression = START + 90 * 60
    base = prometheus_on(history(regression_at=regression, reset_at=None))  # type: ignore[operator]
    status = run(replay(base, "--from", str(START + 60), "--to", str(START + 150 * 60), "--json"))
    assert status == ExitStatus.INVALID  # no-go
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "no_go" and len(out["steps"]) == 150
    first = out["first_action"]
    # by the page rule or by the read route's own check, whichever crosses first (a slice the regression
    # only starts in is too thin on v1 to rule out a shared failure, so the page counts it at 1/8)
    assert first["action"] == "rollback" and first["reasons"][0].startswith(
        ("severe harm: v2's errors", "evidence of harm: v2's errors"))
    taken = time.mktime(time.strptime(first["at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert regression < taken <= regression + 10 * 60
    assert all(s["action"] == "continue" for s in out["steps"] if s["at"] < first["at"])
    read = next(c for c in first["checks"] if c["name"] == "errors:read")
    assert read["inputs"]["baseline"].startswith("v1 over the same minutes")


def test_a_router_restart_in_the_history_is_not_a_regression(
    prometheus_on: object, capsys: pytest.CaptureFixture[str]
) -> None:
    base = prometheus_on(history(regression_at=None, reset_at=START + 60 * 60))  # type: ignore[operator]
    status = run(replay(base, "--from", str(START + 60), "--to", str(START + 150 * 60), "--step", "5m"))
    text = capsys.readouterr().out
    assert status == ExitStatus.INCONCLUSIVE, text  # the window is not over: no verdict yet
    assert "first action: none (continue throughout)" in text and "verdict: inconclusive" in text
    assert text.count(" continue (inconclusive): soaking: ") == 30

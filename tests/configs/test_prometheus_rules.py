"""The Prometheus rules shipped in configs/prometheus: valid, and behaving as their unit tests say."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO

RULES = REPO / "configs" / "prometheus"
promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")


@promtool
def test_rules_are_valid() -> None:
    result = subprocess.run(["promtool", "check", "rules", str(RULES / "dualstack.rules.yml")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    groups = yaml.safe_load((RULES / "dualstack.rules.yml").read_text())["groups"]
    assert f"SUCCESS: {sum(len(g['rules']) for g in groups)} rules found" in result.stdout  # every rule was read


@promtool
def test_rule_unit_tests_pass() -> None:
    """Pages for a tenant burning its budget, never for one error in a quiet hour or a healthy tenant; a
    rollout that holds, a decider that stalls or never decides, a soak whose traffic stopped; counts summed
    across routers, a gauge every router exports not multiplied. Pages when a
    customer email waits over 15 min, tickets a dead letter and a tenant without a relay."""
    result = subprocess.run(["promtool", "test", "rules", "dualstack.rules.test.yml"], cwd=RULES,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_says_what_it_is_and_what_to_do() -> None:
    groups = yaml.safe_load((RULES / "dualstack.rules.yml").read_text())["groups"]
    alerts = [rule for group in groups for rule in group["rules"] if "alert" in rule]
    bare = [rule["alert"] for rule in alerts
            if not rule.get("annotations", {}).get("summary") or not rule.get("annotations", {}).get("description")]
    assert bare == []
    assert {rule["labels"]["severity"] for rule in alerts} <= {"page", "ticket"}
    # whatever is scraped for dualstack, one that cannot be scraped pages (its own alerts go quiet)
    assert any(rule["alert"] == "DualstackTargetDown" and 'up{job=~"dualstack-.*"} == 0' in rule["expr"]
               for rule in alerts)

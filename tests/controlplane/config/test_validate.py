from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from controlplane.cli import main
from controlplane.config import ConfigError, load_config, load_config_text
from controlplane.config.collector import is_hostname
from controlplane.config.model import HealthCheck
from controlplane.config.tenant import TenantClaim
from tests.conftest import REPO

GOOD = """\
upstreams:
  v1: {url: "http://127.0.0.1:3002", tenants: [buatfilm]}
  v2: {url: "http://[::1]:3010/", read_timeout_s: 5, pool_size: 10}
base_domain: AgentBar.ai
platform_subdomains: [funnel, www]
tenants:
  buatfilm: {backend: v1, hosts: [Shop.Example.com.]}
  demo: {backend: v2}
"""


def issues_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(textwrap.dedent(text), "routing.yaml")
    return [str(i) for i in info.value.issues]


def test_the_canonical_example_loads() -> None:
    config = load_config(REPO / "configs" / "routing.example.yaml")
    assert config.tenants["buatfilm"].backend == "v1"
    assert config.upstreams["v1"].url == "http://127.0.0.1:3002"
    assert config.upstreams["v2"].url == "http://127.0.0.1:3010"
    assert config.upstreams["v1"].health == HealthCheck(tcp=True)  # the seed's v1 has no /health
    assert config.upstreams["v2"].health == HealthCheck(path="/health", expect_status=200)
    assert config.base_domain == "agentbar.ai"
    assert config.platform_subdomains == {"funnel", "funnelstaging", "www", "admin"}
    assert ipaddress.ip_network("::1/128") in config.trusted_proxies
    assert len(config.digest) == 64


def test_values_are_normalised_and_frozen() -> None:
    config = load_config_text(GOOD)
    assert config.base_domain == "agentbar.ai"
    assert config.upstreams["v2"].url == "http://[::1]:3010"
    assert config.upstreams["v2"].read_timeout_s == 5.0 and config.upstreams["v2"].pool_size == 10
    assert config.host_aliases == {"shop.example.com": "buatfilm"}
    # default: only loopback may set routing headers
    assert [str(n) for n in config.trusted_proxies] == ["127.0.0.1/32", "::1/128"]
    with pytest.raises(TypeError):
        config.tenants["x"] = config.tenants["demo"]  # type: ignore[index]


def test_every_issue_is_reported_in_one_pass_with_file_and_line() -> None:
    issues = issues_of("""\
        upstreams:
          v1: {url: "ftp://127.0.0.1:3002/x", pool_size: 0}
          v2: {url: "http://127.0.0.1:3010", read_timeot_s: 3}
          v3: {url: "http://x"}
        base_domain: agentbar.ai
        platform_subdomains: [www]
        trusted_proxies: ["127.0.0.1/8", "not-an-ip"]
        tenants:
          buatfilm:
            backend: v3
            hosts: [shop.example.com, www.agentbar.ai, "http://x.com"]
          Bad_Slug:
            backend: v1
          other:
            backend: v2
            hosts: [shop.example.com]
          www: {backend: v1}
          buatfilm:
            backend: v1
        """)
    expected_fragments = [
        "routing.yaml:2: upstreams.v1.pool_size: must be at least 1",
        "routing.yaml:2: upstreams.v1.url: 'ftp://127.0.0.1:3002/x': scheme must be http or https",
        "routing.yaml:3: upstreams.v2.read_timeot_s: unknown key (did you mean 'read_timeout_s'?)",
        "routing.yaml:4: upstreams.v3: unknown key",
        "routing.yaml:7: trusted_proxies[0]: not an IP network",
        "routing.yaml:7: trusted_proxies[1]: not an IP network",
        "routing.yaml:10: tenants.buatfilm.backend: unknown backend 'v3'",
        "routing.yaml:11: tenants.buatfilm.hosts[1]: 'www.agentbar.ai' is a platform host",
        "routing.yaml:11: tenants.buatfilm.hosts[2]: 'http://x.com' is not a host name",
        "routing.yaml:12: tenants.Bad_Slug: 'Bad_Slug' is not a valid slug",
        "routing.yaml:16: tenants.other.hosts[0]: host 'shop.example.com' is already claimed by tenant 'buatfilm' (line 11)",
        "routing.yaml:17: tenants.www: 'www' is a platform subdomain, not a tenant",
        "routing.yaml:17: tenants.www.backend: www is on v1, but the file does not say whose orders v1 holds",
        "routing.yaml:18: tenants.buatfilm: duplicate key (first defined on line 9)",
    ]
    for fragment in expected_fragments:
        assert any(i.startswith(fragment) for i in issues), (fragment, issues)
    assert len(issues) == len(expected_fragments)


def test_missing_required_keys_and_wrong_types() -> None:
    issues = issues_of("""\
        upstreams:
          v1: {url: "http://127.0.0.1:1", connect_timeout_s: fast}
        tenants: [buatfilm]
        """)
    assert "routing.yaml:1: (document): missing required key 'base_domain'" in issues
    assert "routing.yaml:1: upstreams: missing required key 'v2'" in issues
    assert any("upstreams.v1.connect_timeout_s: must be a number, got a string" in i for i in issues)
    assert any("tenants: must be a mapping of slug to tenant, got a list" in i for i in issues)


def test_a_host_implied_by_another_tenants_slug_is_a_conflict() -> None:
    issues = issues_of("""\
        upstreams: {v1: {url: "http://a:1", tenants: [alpha]}, v2: {url: "http://b:2"}}
        base_domain: agentbar.ai
        tenants:
          alpha: {backend: v1, hosts: [beta.agentbar.ai]}
          beta: {backend: v2}
        """)
    assert issues == [
        "routing.yaml:4: tenants.alpha.hosts[0]: host 'beta.agentbar.ai' belongs to tenant 'beta' "
        "by its slug (line 5)"
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("upstreams: [", "routing.yaml:1: (document): invalid YAML"),
        ("a: 1\nb: [1,\n  c: {\n", "routing.yaml:4: (document): invalid YAML"),
        ("", "routing.yaml:1: (document): the file is empty"),
        ("- a\n- b\n", "(document): must be a mapping, got a list"),
        ("a: !!python/object:os.system x\n", "invalid YAML"),
        ("? [a, b]\n: 1\n", "keys must be plain scalars"),
    ],
)
def test_unparseable_documents_name_the_line(text: str, fragment: str) -> None:
    issues = issues_of(text)
    assert any(fragment in i for i in issues), issues


def test_empty_tenants_is_a_valid_file() -> None:
    config = load_config_text('upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}\n'
                              "base_domain: agentbar.ai\ntenants:\n")
    assert dict(config.tenants) == {}


def test_missing_and_non_utf8_files(tmp_path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert str(info.value.issues[0]) == f"{tmp_path / 'nope.yaml'}: (document): file not found"
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"base_domain: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "not UTF-8" in str(info.value)


def test_shadow_settings_are_checked() -> None:
    issues = issues_of("""\
        upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}
        base_domain: agentbar.ai
        shadow: {queue_size: 0, timeout_s: fast}
        tenants:
          x:
            backend: v1
            shadow: {sample_rate: 2, routes: [admin, bogus], ignore: [token], max_body_bytes: 5000000}
        """)
    for fragment in (
        "routing.yaml:3: shadow.queue_size: must be at least 1",
        "routing.yaml:3: shadow.timeout_s: must be a number",
        "routing.yaml:7: tenants.x.shadow.sample_rate: must be between 0 and 1",
        "routing.yaml:7: tenants.x.shadow.routes[0]: admin routes are never mirrored",
        "routing.yaml:7: tenants.x.shadow.routes[1]: unknown route class 'bogus'",
        "routing.yaml:7: tenants.x.shadow.ignore[0]: 'token' is not a JSON path",
        "routing.yaml:7: tenants.x.shadow.max_body_bytes: at most 1048576",
    ):
        assert any(i.startswith(fragment) for i in issues), (fragment, issues)
    config = load_config_text(textwrap.dedent("""\
        upstreams: {v1: {url: "http://a:1", tenants: ["on", "off"]}, v2: {url: "http://b:2"}}
        base_domain: agentbar.ai
        tenants:
          on: {backend: v1, shadow: {}}
          off: {backend: v1, shadow: {enabled: false}}
        """))
    assert config.tenants["on"].shadow is not None and config.tenants["off"].shadow is None


def test_shadow_state_fields_presence_and_recheck_are_declared() -> None:
    issues = issues_of("""\
        upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}
        base_domain: agentbar.ai
        tenants:
          x:
            backend: v1
            shadow: {state_fields: [status], ignore_entirely: [1], not_replicated_recheck_s: 600}
        """)
    for fragment in (
        "routing.yaml:6: tenants.x.shadow.state_fields[0]: 'status' is not a JSON path",
        "routing.yaml:6: tenants.x.shadow.ignore_entirely[0]:",
        "routing.yaml:6: tenants.x.shadow.not_replicated_recheck_s: must be at most 60",
    ):
        assert any(i.startswith(fragment) for i in issues), (fragment, issues)
    config = load_config_text(textwrap.dedent("""\
        upstreams: {v1: {url: "http://a:1", tenants: [usual]}, v2: {url: "http://b:2"}}
        base_domain: agentbar.ai
        tenants:
          usual: {backend: v1, shadow: {}}
          own: {backend: v2, shadow: {state_fields: ["$.order.paidAt"], ignore_entirely: ["$.token"],
                                      not_replicated_recheck_s: 0}}
        """))
    usual, own = config.tenants["usual"].shadow, config.tenants["own"].shadow
    assert usual is not None and own is not None
    assert usual.state_fields == {"$.order.status", "$.order.totalAmount", "$.success"}
    assert usual.ignore == {"$.token", "$.paymentUrl"} and usual.ignore_entirely == {"$.redirectUrl"}
    assert usual.not_replicated_recheck_s == 6.0
    assert (own.state_fields, own.ignore_entirely, own.not_replicated_recheck_s) == (
        {"$.order.paidAt"}, {"$.token"}, 0)


def test_rollout_thresholds_are_declared_and_checked() -> None:
    config = load_config(REPO / "configs" / "routing.example.yaml")
    assert config.rollout.soak_s == 24 * 3600 and config.rollout.alpha == 0.001
    config = load_config_text(textwrap.dedent("""\
        upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}
        base_domain: agentbar.ai
        rollout: {soak_hours: 12, min_requests: 100}
        tenants:
          slow: {backend: v2, rollout: {soak_hours: 48}}
          usual: {backend: v2}
        """))
    assert config.rollout_policy("slow").soak_s == 48 * 3600
    assert config.rollout_policy("usual").soak_s == 12 * 3600 and config.rollout.min_requests == 100
    issues = issues_of("""\
        upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}
        base_domain: agentbar.ai
        rollout: {soak_hours: -1, alpha: 2, bogus: 1, min_requests: 1.5}
        tenants:
          x: {backend: v2, rollout: {soak: 1}}
        """)
    for fragment in ("routing.yaml:3: rollout.alpha: must be between 0 and 1", "routing.yaml:3: rollout.bogus: unknown key",
                     "routing.yaml:3: rollout.min_requests: must be an integer",
                     "routing.yaml:3: rollout.soak_hours: must be at least 0.01",
                     "routing.yaml:5: tenants.x.rollout.soak: unknown key"):
        assert any(i.startswith(fragment) for i in issues), (fragment, issues)


def test_cutover_requirements_and_webhook_delivery_are_declared_and_checked() -> None:
    config = load_config(REPO / "configs" / "routing.example.yaml")
    assert config.cutover.min_match_rate == 0.99 and config.cutover.min_comparisons == 500
    assert config.cutover.hold_s == 2.0
    assert config.tenants["buatfilm"].webhooks == "both"
    config = load_config_text(textwrap.dedent("""\
        upstreams: {v1: {url: "http://a:1", tenants: [quiet]}, v2: {url: "http://b:2"}}
        base_domain: agentbar.ai
        cutover: {min_match_rate: 0.95, min_comparisons: 0, shadow_window_hours: 2, grace_minutes: 5,
                  hold_s: 0.5}
        tenants:
          quiet: {backend: v1, webhooks: primary}
        """))
    assert (config.cutover.min_match_rate, config.cutover.min_comparisons, config.cutover.shadow_window_s,
            config.cutover.grace_minutes, config.cutover.hold_s) == (0.95, 0, 7200, 5, 0.5)
    assert config.tenants["quiet"].webhooks == "primary"
    issues = issues_of("""\
        upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}
        base_domain: agentbar.ai
        cutover: {min_match_rate: 1.5, min_comparisons: -1, grace: 3, hold_s: 60}
        tenants:
          x: {backend: v1, webhooks: sometimes}
        """)
    for fragment in ("routing.yaml:3: cutover.min_match_rate: must be between 0 and 1",
                     "routing.yaml:3: cutover.min_comparisons: must be at least 0",
                     "routing.yaml:3: cutover.grace: unknown key",
                     "routing.yaml:3: cutover.hold_s: must be at most 30",
                     "routing.yaml:5: tenants.x.webhooks: webhooks must be both or primary"):
        assert any(i.startswith(fragment) for i in issues), (fragment, issues)


def test_v1s_tenants_are_declared_on_its_upstream() -> None:
    config = load_config(REPO / "configs" / "routing.example.yaml")
    assert config.v1_tenants == {"buatfilm"} and config.v1_tenants_declared
    assert config.v1_refusal("buatfilm") is None
    assert "v1 does not hold demo's orders" in (config.v1_refusal("demo") or "")
    # A file with no tenant on v1 need not list any: then nothing may be moved to v1.
    undeclared = load_config_text(GOOD.replace(", tenants: [buatfilm]", "").replace("backend: v1", "backend: v2"))
    assert undeclared.v1_tenants == frozenset() and not undeclared.v1_tenants_declared
    assert "does not say whose orders v1 holds" in (undeclared.v1_refusal("buatfilm") or "")
    issues = issues_of("""\
        upstreams:
          v1: {url: "http://a:1", tenants: [buatfilm, ghost]}
          v2: {url: "http://b:2", tenants: [buatfilm]}
        base_domain: agentbar.ai
        tenants:
          buatfilm: {backend: v1}
        """)
    assert "routing.yaml:2: upstreams.v1.tenants[1]: 'ghost' is not a tenant of this file" in issues, issues
    assert any(i.startswith("routing.yaml:3: upstreams.v2.tenants: v2 is multi-tenant") for i in issues), issues


def test_every_number_is_finite_and_bounded() -> None:
    """`.nan` passed every `< minimum` check and failed each request later; `.inf` meant "never"."""
    issues = issues_of("""\
        upstreams:
          v1: {url: "http://a:1", read_timeout_s: .nan, connect_timeout_s: .inf, tenants: [x]}
          v2: {url: "http://b:2", read_timeout_s: 1.0e+999, pool_size: 100000000}
        base_domain: agentbar.ai
        shadow: {queue_size: 1000000000000, concurrency: 50000, timeout_s: -.inf}
        rollout: {soak_hours: .inf, page_burn: .nan, min_requests: 10000000000}
        cutover: {grace_minutes: .inf, router_wait_s: .NaN, shadow_window_hours: 1000000}
        tenants:
          x: {backend: v1, rollout: {soak_hours: .inf}, shadow: {numeric_tolerance: .inf, sample_rate: .nan}}
        """)
    assert issues == [
        "routing.yaml:2: upstreams.v1.connect_timeout_s: must be a finite number, got inf",
        "routing.yaml:2: upstreams.v1.read_timeout_s: must be a finite number, got nan",
        "routing.yaml:3: upstreams.v2.pool_size: must be at most 10000, got 100000000",
        "routing.yaml:3: upstreams.v2.read_timeout_s: must be a finite number, got inf",
        "routing.yaml:5: shadow.concurrency: must be at most 10000, got 50000",
        "routing.yaml:5: shadow.queue_size: must be at most 1e+06, got 1000000000000",
        "routing.yaml:5: shadow.timeout_s: must be a finite number, got -inf",
        "routing.yaml:6: rollout.min_requests: must be at most 1e+09, got 10000000000",
        "routing.yaml:6: rollout.page_burn: must be a finite number, got nan",
        "routing.yaml:6: rollout.soak_hours: must be a finite number, got inf",
        "routing.yaml:7: cutover.grace_minutes: must be a finite number, got inf",
        "routing.yaml:7: cutover.router_wait_s: must be a finite number, got nan",
        "routing.yaml:7: cutover.shadow_window_hours: must be at most 8760, got 1000000",
        "routing.yaml:9: tenants.x.rollout.soak_hours: must be a finite number, got inf",
        "routing.yaml:9: tenants.x.shadow.numeric_tolerance: must be a finite number, got inf",
        "routing.yaml:9: tenants.x.shadow.sample_rate: must be a finite number, got nan",
    ]


def test_a_trailing_newline_is_no_part_of_a_valid_name() -> None:
    """`$` matches before a final newline: "beta\\n" passed the slug pattern and reached nginx files."""
    issues = issues_of("""\
        upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}
        base_domain: agentbar.ai
        tenants:
          "beta\\n": {backend: v1}
        """)
    assert issues == ["routing.yaml:4: tenants.beta\\n: 'beta\\n' is not a valid slug (lower-case letters, digits "
                      "and '-', 1-63 characters, not starting or ending with '-')"]
    assert not is_hostname("shop.example.com\n") and not is_hostname("shop\n.example.com")
    assert not TenantClaim("beta\n", "header").valid and TenantClaim("beta", "header").valid


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x: &a [*a]\n", ":1: (document): invalid YAML: aliases (*a) are not allowed: write the value out"),
        ("a: " + "[" * 900 + "]" * 900 + "\n", ":1: (document): invalid YAML: nested deeper than 16 levels"),
        ("a: " + "9" * 5000 + "\n", ":1: a: number of 5000 characters is too long (at most 32)"),
        ("a:\n  b: 2024-13-45\n", ":2: a.b: '2024-13-45' cannot be read as timestamp: month must be in 1..12"),
    ],
    ids=["self-alias", "deep", "5000-digits", "bad-timestamp"],
)
def test_dualstack_validate_prints_one_line_per_problem_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == [f"{path}{message}", "1 issue(s) found"]


def test_dualstack_validate_refuses_a_nan_timeout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nan = tmp_path / "nan.yaml"
    nan.write_text(GOOD.replace("read_timeout_s: 5", "read_timeout_s: .nan"))
    assert main(["validate", str(nan)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{nan}:3: upstreams.v2.read_timeout_s: must be a finite number, got nan", "1 issue(s) found"]


def test_no_tenant_is_put_on_a_v1_that_does_not_hold_it() -> None:
    """v1 is single-tenant: routing another tenant there serves its customers v1's orders."""
    issues = issues_of("""\
        upstreams:
          v1: {url: "http://a:1", tenants: [buatfilm]}
          v2: {url: "http://b:2"}
        base_domain: agentbar.ai
        tenants:
          buatfilm: {backend: v1}
          alpha: {backend: v1}
        """)
    assert issues == ["routing.yaml:7: tenants.alpha.backend: v1 does not hold alpha's orders (upstreams.v1.tenants: "
                      "buatfilm): v1 is single-tenant, so it would serve alpha's customers another tenant's orders"]
    # Any tenant on v1, even one alone, needs the list: without it v1 would serve whoever is put there.
    for tenants in ("buatfilm: {backend: v1}\n  alpha: {backend: v2}", "buatfilm: {backend: v1}\n  alpha: {backend: v1}"):
        issues = issues_of(textwrap.dedent("""\
            upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}
            base_domain: agentbar.ai
            tenants:
            """) + "  " + tenants + "\n")
        on_v1 = tenants.count("v1")
        assert len(issues) == on_v1, issues
        assert all("list them in upstreams.v1.tenants" in i for i in issues), issues
    assert issues[1].startswith("routing.yaml:5: tenants.alpha.backend: alpha is on v1, but the file does not say "
                                "whose orders v1 holds"), issues


def test_a_large_file_reports_each_misplaced_tenant_briefly() -> None:
    """Each issue names a few of v1's tenants, not all of them: N misplaced tenants of a large file are
    N short lines, not N lines of N slugs."""
    held = [f"t{i:04d}" for i in range(500)]
    stray = [f"s{i:04d}" for i in range(500)]
    tenants = "".join(f"  {slug}: {{backend: v1}}\n" for slug in held + stray)
    issues = issues_of(textwrap.dedent(f"""\
        upstreams:
          v1: {{url: "http://a:1", tenants: [{', '.join(held)}]}}
          v2: {{url: "http://b:2"}}
        base_domain: agentbar.ai
        tenants:
        """) + tenants)
    assert len(issues) == len(stray)
    assert "(upstreams.v1.tenants: t0000, t0001, t0002, t0003, t0004 and 495 more)" in issues[0], issues[0]
    assert max(len(i) for i in issues) < 300


def test_an_unknown_backend_is_one_issue_not_a_knock_on_one() -> None:
    issues = issues_of("""\
        upstreams:
          v1: {url: "http://a:1", tenants: [buatfilm]}
          v2: {url: "http://b:2"}
        base_domain: agentbar.ai
        tenants:
          buatfilm: {backend: v2x}
        """)
    assert issues == ["routing.yaml:6: tenants.buatfilm.backend: unknown backend 'v2x' (expected one of: v1, v2)"]


def test_router_limits_are_finite_and_bounded() -> None:
    issues = issues_of("""\
        upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}
        base_domain: agentbar.ai
        limits: {header_timeout_s: .inf, keepalive_timeout_s: 0, max_connections: 2.5, tenant_pool_share: 1.5,
                 body_timeout_s: 99999, backlog: 5}
        tenants: {}
        """)
    for fragment in (
        "routing.yaml:4: limits.backlog: unknown key",
        "routing.yaml:3: limits.header_timeout_s: must be a finite number",
        "routing.yaml:3: limits.keepalive_timeout_s: must be at least 0.1",
        "routing.yaml:3: limits.max_connections: must be an integer",
        "routing.yaml:3: limits.tenant_pool_share: must be at most 1",
        "routing.yaml:4: limits.body_timeout_s: must be at most 3600",
    ):
        assert any(i.startswith(fragment) for i in issues), (fragment, issues)
    config = load_config_text(textwrap.dedent("""\
        upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}
        base_domain: agentbar.ai
        limits: {max_connections: 100, tenant_pool_share: 0.25}
        tenants: {}
        """))
    assert config.limits.max_connections == 100 and config.limits.header_timeout_s == 10.0
    assert config.limits.tenant_slots(100) == 25 and config.limits.tenant_slots(2) == 1


def test_an_upstreams_health_check_is_a_path_and_status_or_a_tcp_connect() -> None:
    config = load_config_text(GOOD)
    assert config.upstreams["v1"].health == HealthCheck(path="/health", expect_status=200, tcp=False)
    config = load_config_text(GOOD.replace('v1: {url: "http://127.0.0.1:3002", tenants: [buatfilm]}',
                                           'v1: {url: "http://127.0.0.1:3002", tenants: [buatfilm], health: {path: /health/ready}}'))
    assert config.upstreams["v1"].health == HealthCheck(path="/health/ready", expect_status=200)
    config = load_config_text(GOOD.replace('v1: {url: "http://127.0.0.1:3002", tenants: [buatfilm]}',
                                           'v1: {url: "http://127.0.0.1:3002", tenants: [buatfilm], health: {path: /, expect_status: 404}}'))
    assert config.upstreams["v1"].health == HealthCheck(path="/", expect_status=404)


@pytest.mark.parametrize(("health", "message"), [
    ("{tcp: false}", "upstreams.v1.health.tcp: must be true (leave it out for an HTTP check)"),
    ("{tcp: yes please}", "upstreams.v1.health.tcp: must be true (leave it out for an HTTP check)"),
    ("{tcp: true, path: /health}", "upstreams.v1.health.path: a TCP check sends no request: leave out path and "
                                   "expect_status, or tcp"),
    ("{path: health}", "upstreams.v1.health.path: 'health' must be a URL path such as /orders/"),
    ("{path: \"/health?x=1\"}", "upstreams.v1.health.path: '/health?x=1' must be a URL path such as /orders/"),
    ("{path: \"/health/ x\"}", "upstreams.v1.health.path: '/health/ x' must be a URL path such as /orders/"),
    ("{expect_status: 99}", "upstreams.v1.health.expect_status: must be at least 100, got 99"),
    ("{expect_status: 600}", "upstreams.v1.health.expect_status: must be at most 599, got 600"),
    ("{expect_status: 200.5}", "upstreams.v1.health.expect_status: must be an integer, got float"),
    ("{path: /health, timeout: 3}", "upstreams.v1.health.timeout: unknown key"),
    ("{tpc: true}", "upstreams.v1.health.tpc: unknown key (did you mean 'tcp'?)"),
    ("/health", "upstreams.v1.health: must be a mapping, got a string"),
])
def test_a_wrong_health_check_is_refused(health: str, message: str) -> None:
    issues = issues_of(GOOD.replace('v1: {url: "http://127.0.0.1:3002", tenants: [buatfilm]}',
                                    f'v1: {{url: "http://127.0.0.1:3002", tenants: [buatfilm], health: {health}}}'))
    assert any(message in issue for issue in issues), issues

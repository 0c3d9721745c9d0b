from __future__ import annotations

import ipaddress
import textwrap

import pytest

from controlplane.config import ConfigError, load_config, load_config_text
from tests.conftest import REPO

GOOD = """\
upstreams:
  v1: {url: "http://127.0.0.1:3002"}
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
        upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}
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
        upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}
        base_domain: agentbar.ai
        tenants:
          on: {backend: v1, shadow: {}}
          off: {backend: v1, shadow: {enabled: false}}
        """))
    assert config.tenants["on"].shadow is not None and config.tenants["off"].shadow is None


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
    assert config.tenants["buatfilm"].webhooks == "both"
    config = load_config_text(textwrap.dedent("""\
        upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}
        base_domain: agentbar.ai
        cutover: {min_match_rate: 0.95, min_comparisons: 0, shadow_window_hours: 2, grace_minutes: 5}
        tenants:
          quiet: {backend: v1, webhooks: primary}
        """))
    assert (config.cutover.min_match_rate, config.cutover.min_comparisons, config.cutover.shadow_window_s,
            config.cutover.grace_minutes) == (0.95, 0, 7200, 5)
    assert config.tenants["quiet"].webhooks == "primary"
    issues = issues_of("""\
        upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}
        base_domain: agentbar.ai
        cutover: {min_match_rate: 1.5, min_comparisons: -1, grace: 3}
        tenants:
          x: {backend: v1, webhooks: sometimes}
        """)
    for fragment in ("routing.yaml:3: cutover.min_match_rate: must be between 0 and 1",
                     "routing.yaml:3: cutover.min_comparisons: must be at least 0",
                     "routing.yaml:3: cutover.grace: unknown key",
                     "routing.yaml:5: tenants.x.webhooks: webhooks must be both or primary"):
        assert any(i.startswith(fragment) for i in issues), (fragment, issues)


def test_v1s_tenants_are_declared_on_its_upstream() -> None:
    config = load_config(REPO / "configs" / "routing.example.yaml")
    assert config.v1_tenants == {"buatfilm"}
    assert load_config_text(GOOD).v1_tenants == frozenset()
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

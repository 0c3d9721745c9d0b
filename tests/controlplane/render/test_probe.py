"""Which probes fail an apply: a site (or API) path that answered and no longer answers the same way."""

from __future__ import annotations

from controlplane.config import load_config_text
from controlplane.render.probe import Probe, regressions, run_probes, site_probes

SITE = Probe("buatfilm.agentbar.ai", "/")


def config_text() -> str:
    return """\
upstreams: {v1: {url: "http://a:1", tenants: [buatfilm]}, v2: {url: "http://b:2"}}
base_domain: agentbar.ai
nginx: {site: {mode: snippet, probe: /healthz}}
tenants:
  buatfilm: {backend: v1, hosts: [shop.example.com], site: {mode: static, root: /srv/b, probe: /thank-you}}
  demo: {backend: v2}
"""


def test_a_site_that_answered_must_answer_in_the_same_class() -> None:
    assert regressions({SITE: 200}, {SITE: 200}) == []
    assert regressions({SITE: 301}, {SITE: 302}) == []  # the same class
    assert regressions({SITE: 200}, {SITE: 404}) == [
        "probe buatfilm.agentbar.ai/: answered 200 before the apply, 404 after it"]
    assert regressions({SITE: 200}, {SITE: 301}) != []
    assert regressions({SITE: 302}, {SITE: None}) == [
        "probe buatfilm.agentbar.ai/: answered 302 before the apply, nothing after it"]


def test_a_site_that_did_not_answer_before_constrains_nothing() -> None:
    # A new tenant, or a site already broken (the old generated block sent / to the payment service).
    for before in (None, 404, 502):
        for after in (None, 200, 404, 500):
            assert regressions({SITE: before}, {SITE: after}) == []


def test_each_tenant_host_and_alias_is_probed_at_its_declared_path() -> None:
    config = load_config_text(config_text())
    plan = site_probes(config)
    assert plan.probes == [Probe("buatfilm.agentbar.ai", "/thank-you"), Probe("buatfilm.agentbar.ai", "/health"),
                           Probe("shop.example.com", "/thank-you"), Probe("shop.example.com", "/health"),
                           Probe("demo.agentbar.ai", "/healthz"), Probe("demo.agentbar.ai", "/health")]
    assert (plan.hosts, plan.of_hosts) == (3, 3)
    assert plan.describe() == "6 probe(s) of tenant sites and APIs"
    # /health is probed while it is an API path: a host must not lose the payment service either.
    without = load_config_text(config_text().replace("nginx: {", "nginx: {api_paths: [/orders/], "))
    assert site_probes(without).probes == [Probe("buatfilm.agentbar.ai", "/thank-you"),
                                           Probe("shop.example.com", "/thank-you"), Probe("demo.agentbar.ai", "/healthz")]


def many(tenants: int) -> str:
    lines = "".join(f"  t{i:04d}: {{backend: v2, hosts: [shop{i}.example.com]}}\n" for i in range(tenants))
    return config_text().split("tenants:\n")[0].replace("nginx: {site: {mode: snippet, probe: /healthz}}\n", "") \
        .replace("tenants: [buatfilm]", "tenants: []") + "tenants:\n" + lines


def test_many_hosts_are_sampled_changed_tenants_first() -> None:
    config = load_config_text(many(300))
    plan = site_probes(config, first={"t0007", "t0299"}, seed="v1", max_hosts=50)
    assert (plan.hosts, plan.of_hosts) == (50, 600)
    assert plan.describe() == "100 probe(s) of tenant sites and APIs (a sample of 50 of 600 hosts)"
    hosts = {probe.host for probe in plan.probes}
    assert {"t0007.agentbar.ai", "shop7.example.com", "t0299.agentbar.ai", "shop299.example.com"} <= hosts
    assert site_probes(config, first={"t0007", "t0299"}, seed="v1", max_hosts=50) == plan  # reproducible
    assert site_probes(config, first={"t0007", "t0299"}, seed="v2", max_hosts=50) != plan  # another sample
    changed_everywhere = site_probes(config, first=set(config.tenants), seed="v1", max_hosts=50)
    assert changed_everywhere.hosts == 50


def test_a_path_that_answered_and_was_not_asked_again_fails() -> None:
    # No answer is never a pass: the after round spent its budget before reaching this probe.
    assert run_probes("http://127.0.0.1:9", [SITE], budget_s=0) == {}
    assert regressions({SITE: 200}, {}) == [
        "probe buatfilm.agentbar.ai/: answered 200 before the apply, and was not asked after it (the 30 s probe "
        "budget ran out)"]
    assert regressions({SITE: 404}, {}) == []

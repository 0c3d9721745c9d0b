from __future__ import annotations

import pytest

from controlplane.config import load_config_text
from controlplane.config.tenant import TenantClaim, TenantRule, strip_port

CONFIG = load_config_text("""\
upstreams: {v1: {url: "http://a:1", tenants: [buatfilm]}, v2: {url: "http://b:2"}}
base_domain: agentbar.ai
platform_subdomains: [funnel, funnelstaging, www, admin]
trusted_proxies: ["127.0.0.1/32", "::1/128", "10.1.0.0/16"]
tenants:
  buatfilm: {backend: v1, hosts: [shop.example.com]}
  demo: {backend: v2}
""")
RULE = TenantRule.from_config(CONFIG)
TRUSTED, UNTRUSTED = "127.0.0.1", "203.0.113.9"


@pytest.mark.parametrize(
    ("peer", "header", "host", "query", "expected"),
    [
        # 1. the header wins, but only from a trusted peer
        (TRUSTED, "demo", "buatfilm.agentbar.ai", "", TenantClaim("demo", "header")),
        ("::1", "Demo ", None, "", TenantClaim("demo", "header")),
        ("::ffff:127.0.0.1", "demo", None, "", TenantClaim("demo", "header")),
        ("10.1.2.3", "demo", None, "", TenantClaim("demo", "header")),
        (UNTRUSTED, "demo", "buatfilm.agentbar.ai", "", TenantClaim("buatfilm", "host")),
        (UNTRUSTED, "demo", None, "", None),
        (None, "demo", None, "", None),  # no peer address (unix socket): not trusted
        ("not-an-ip", "demo", None, "", None),
        # 2. the host: explicit hosts, <slug>.<base_domain>, ports, case, trailing dot
        (UNTRUSTED, None, "shop.example.com", "", TenantClaim("buatfilm", "host")),
        (UNTRUSTED, None, "SHOP.Example.COM:443", "", TenantClaim("buatfilm", "host")),
        (UNTRUSTED, None, "Demo.AgentBar.ai.:8080", "", TenantClaim("demo", "host")),
        (UNTRUSTED, None, "nobody.agentbar.ai", "tenant=demo", TenantClaim("nobody", "host")),
        # platform subdomains, the bare domain, deeper names and other hosts name no tenant...
        (UNTRUSTED, None, "www.agentbar.ai", "", None),
        (UNTRUSTED, None, "agentbar.ai", "", None),
        (UNTRUSTED, None, "api.demo.agentbar.ai", "", None),
        (UNTRUSTED, None, "localhost:3010", "", None),
        (UNTRUSTED, None, "evilagentbar.ai", "", None),
        (UNTRUSTED, None, "[::1]:8080", "", None),
        # 3. ...so the query parameter is reachable for them
        (UNTRUSTED, None, "funnel.agentbar.ai", "tenant=Demo", TenantClaim("demo", "query")),
        (UNTRUSTED, None, "localhost:3010", "a=1&tenant=buatfilm", TenantClaim("buatfilm", "query")),
        (UNTRUSTED, None, None, "tenant=", None),
        (UNTRUSTED, None, None, "", None),
    ],
)
def test_resolution_matrix(peer, header, host, query, expected) -> None:
    assert RULE.claim(peer=peer, header_slug=header, host=host, query_string=query) == expected


def test_malformed_slugs_are_claims_that_are_not_valid() -> None:
    claim = RULE.claim(peer=TRUSTED, header_slug="../etc", host=None, query_string="")
    assert claim is not None and not claim.valid
    assert TenantClaim("buatfilm", "host").valid


@pytest.mark.parametrize(
    ("raw", "name"),
    [("a.com:80", "a.com"), ("[::1]:8080", "::1"), ("[::1]", "::1"), ("A.COM.", "a.com"), ("a", "a")],
)
def test_strip_port(raw: str, name: str) -> None:
    assert strip_port(raw) == name

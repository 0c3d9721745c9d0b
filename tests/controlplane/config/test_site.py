"""`nginx.api_paths`, `nginx.site` and a tenant's own `site`: defaults, precedence, and every error in one pass."""

from __future__ import annotations

import textwrap

import pytest

from controlplane.config import ConfigError, load_config, load_config_text
from controlplane.config.model import DEFAULT_API_PATHS, SiteSpec
from tests.conftest import REPO

HEAD = """\
upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}
base_domain: agentbar.ai
"""


def issues_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(HEAD + textwrap.dedent(text), "routing.yaml")
    return [str(i) for i in info.value.issues]


def test_without_a_declaration_the_site_stays_in_ops_own_server_block() -> None:
    config = load_config_text(HEAD + "tenants:\n  shop: {backend: v2}\n")
    assert config.site_of("shop") == SiteSpec(mode="snippet", probe="/")
    assert config.nginx.api_paths == DEFAULT_API_PATHS
    assert {"/payment/create", "/orders/", "/webhooks/midtrans", "/health", "/admin/", "/openapi.json"} \
        <= set(DEFAULT_API_PATHS)


def test_a_tenant_site_wins_over_the_nginx_sections() -> None:
    config = load_config_text(HEAD + textwrap.dedent("""\
        nginx:
          api_paths: [/api/, /webhooks/midtrans]
          site: {mode: static, root: "/var/www/{slug}/dist/", probe: /thank-you}
        tenants:
          shop: {backend: v2}
          own: {backend: v2, site: {mode: upstream, url: "http://127.0.0.1:5173"}}
          kept: {backend: v2, site: {mode: snippet}}
        """))
    assert config.nginx.api_paths == ("/api/", "/webhooks/midtrans")
    shop = config.site_of("shop")
    assert (shop.mode, shop.root_of("shop"), shop.probe) == ("static", "/var/www/shop/dist", "/thank-you")
    assert config.site_of("own") == SiteSpec(mode="upstream", url="http://127.0.0.1:5173", probe="/")
    assert config.site_of("kept").mode == "snippet"


def test_the_canonical_example_declares_each_tenants_site() -> None:
    config = load_config(REPO / "configs" / "routing.example.yaml")
    assert config.site_of("buatfilm").mode == "snippet"
    assert config.site_of("demo") == SiteSpec(mode="static", root="/var/www/demo/dist")


def test_every_site_problem_is_reported_with_file_line_and_path() -> None:
    issues = issues_of("""\
        nginx:
          api_paths: [/orders/, /orders/1/status, /, "/a b", /__dualstack/x, /health, /health]
          site: {mode: static}
        tenants:
          a: {backend: v2, site: {mode: spa}}
          b: {backend: v2, site: {mode: upstream, root: /x}}
          c: {backend: v2, site: {mode: static, root: "var/www", probe: "x?y"}}
          d: {backend: v2, site: {mode: upstream, url: "http://127.0.0.1:5173/app"}}
          e: {backend: v2, site: {root: /x}}
          f: {backend: v2, site: snippet}
          g: {backend: v2, site: {mode: static, root: "/var/www/{tenant}"}}
          h: {backend: v2, site: {mode: snippet, probe: /, bogus: 1}}
        """)
    assert issues == [
        "routing.yaml:4: nginx.api_paths[1]: '/orders/1/status' overlaps '/orders/' (line 4): list each path once",
        "routing.yaml:4: nginx.api_paths[2]: '/' is the site's: list the paths the payment service answers, such as /orders/",
        "routing.yaml:4: nginx.api_paths[3]: '/a b' must be a URL path such as /orders/ (letters, digits, '.', '_', '~', '-' and '/'; no '..', '//', query or spaces)",
        "routing.yaml:4: nginx.api_paths[4]: '/__dualstack/x' overlaps /__dualstack/, where nginx answers dualstack's own checks",
        "routing.yaml:4: nginx.api_paths[6]: '/health' overlaps '/health' (line 4): list each path once",
        "routing.yaml:5: nginx.site: mode static needs root: the folder its index.html is in",
        "routing.yaml:7: tenants.a.site.mode: unknown site mode 'spa' (expected one of: snippet, static, upstream)",
        "routing.yaml:8: tenants.b.site: mode upstream needs url: the server that serves the site",
        "routing.yaml:8: tenants.b.site.root: root belongs to mode static, not upstream",
        "routing.yaml:9: tenants.c.site.probe: 'x?y' must be a URL path such as /orders/ (letters, digits, '.', '_', '~', '-' and '/'; no '..', '//', query or spaces)",
        "routing.yaml:9: tenants.c.site.root: 'var/www' must be an absolute folder of letters, digits, '.', '_', '-' and '/' ({slug} stands for the tenant's slug)",
        "routing.yaml:10: tenants.d.site.url: 'http://127.0.0.1:5173/app': no path, query or fragment: the request's own path is forwarded",
        "routing.yaml:11: tenants.e.site: missing required key 'mode'",
        "routing.yaml:12: tenants.f.site: must be a mapping, got a string",
        "routing.yaml:13: tenants.g.site.root: '/var/www/{tenant}' must be an absolute folder of letters, digits, '.', '_', '-' and '/' ({slug} stands for the tenant's slug)",
        "routing.yaml:14: tenants.h.site.bogus: unknown key",
    ]


def test_an_empty_api_path_list_is_refused() -> None:
    assert issues_of("nginx: {api_paths: []}\ntenants:\n  a: {backend: v2}\n") == [
        "routing.yaml:3: nginx.api_paths: must list at least one path (the payment service's)"]


def test_a_url_whose_host_would_be_nginx_directives_is_refused_wherever_a_url_is_declared() -> None:
    evil = "http://127.0.0.1;} server {listen 29019;return 200 EVIL;} upstream evil {server 127.0.0.1:29020"
    text = (f'upstreams: {{v1: {{url: "http://a\\"b:1"}}, v2: {{url: "http://{{b}}:2"}}}}\nbase_domain: agentbar.ai\n'
            f'tenants:\n  d: {{backend: v2, site: {{mode: upstream, url: "{evil}"}}}}\n'
            '  e: {backend: v2, site: {mode: upstream, url: "http://[::1]:5173"}}\n'
            '  f: {backend: v2, site: {mode: upstream, url: "http://site-1.example.com.:8080"}}\n'
            '  g: {backend: v2, site: {mode: upstream, url: "http://[::1%;}evil{]:5173"}}\n'
            '  h: {backend: v2, site: {mode: upstream, url: "http://v2:3010"}}\n')
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "routing.yaml")
    refused = [str(i) for i in info.value.issues]
    host_rule = "the host must be an IP address or a DNS name (letters, digits, '-' and '.')"
    assert [line.split(": ", 2)[1] for line in refused] == ["upstreams.v1.url", "upstreams.v2.url", "tenants.d.site.url",
                                                            "tenants.g.site.url"]
    assert all(line.endswith(host_rule) for line in refused), refused

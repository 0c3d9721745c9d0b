"""v2's settings: without a routing file, tenants resolve as the router resolves them."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.config import load_config
from controlplane.config.tenant import TenantRule
from proxy.v2.settings import V2Settings, tenant_rule

MINIMAL = """\
upstreams:
  v1: {url: "http://127.0.0.1:3001", tenants: [shop]}
  v2: {url: "http://127.0.0.1:3010"}
base_domain: agentbar.ai
tenants:
  shop: {backend: v1}
"""


@pytest.mark.parametrize(("peer", "header", "host"), [
    ("10.0.0.5", None, "shop.agentbar.ai"),
    ("10.0.0.5", None, "www.agentbar.ai"),
    ("10.0.0.5", None, "funnel.agentbar.ai:443"),
    ("10.0.0.5", "shop", "admin.agentbar.ai"),
    ("127.0.0.1", "shop", "admin.agentbar.ai"),
    ("::1", "shop", "localhost"),
])
def test_the_defaults_are_the_routers_for_a_file_that_names_only_its_base_domain(
    tmp_path: Path, peer: str, header: str | None, host: str
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(MINIMAL)
    routers = TenantRule.from_config(load_config(routing))  # what the router's routing table holds
    defaults, base_domain = tenant_rule(None)
    assert base_domain == "agentbar.ai" == V2Settings("postgresql://", defaults).base_domain
    assert defaults.peer_is_trusted(peer) == routers.peer_is_trusted(peer)
    claim = dict(peer=peer, header_slug=header, host=host, query_string="")
    assert defaults.claim(**claim) == routers.claim(**claim)

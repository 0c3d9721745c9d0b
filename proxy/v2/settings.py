"""Everything the v2 service is configured with, parsed once into a frozen object."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from controlplane.config import load_config
from controlplane.config.model import DEFAULT_TRUSTED_PROXIES
from proxy.tenant import TenantRule

VERSION = "2.0.0"
DEFAULT_PLATFORM = frozenset({"funnel", "funnelstaging", "www", "admin"})


@dataclass(frozen=True, slots=True)
class V2Settings:
    database_url: str
    rule: TenantRule
    base_domain: str = "agentbar.ai"
    schema: str = "payments"
    # Where Midtrans sends each payment's notifications ({slug} and {base_domain} are filled in).
    notification_url_template: str = "https://{slug}.{base_domain}/webhooks/midtrans"
    finish_url_template: str | None = None
    snap_urls: dict[str, str] = field(default_factory=dict)
    pool_max_size: int = 10
    tenant_cache_ttl_s: float = 5.0
    version: str = VERSION

    def notification_url(self, slug: str) -> str:
        return self.notification_url_template.format(slug=slug, base_domain=self.base_domain)

    def finish_url(self, slug: str) -> str | None:
        if self.finish_url_template is None:
            return None
        return self.finish_url_template.format(slug=slug, base_domain=self.base_domain)


def tenant_rule(routing_file: str | Path | None, base_domain: str) -> tuple[TenantRule, str]:
    """The router's own resolution rule: from its routing file when given, else the defaults."""
    if routing_file is not None:
        config = load_config(routing_file)
        return TenantRule.from_config(config), config.base_domain
    import ipaddress

    return TenantRule(
        base_domain=base_domain, platform_subdomains=DEFAULT_PLATFORM,
        trusted_proxies=tuple(ipaddress.ip_network(n) for n in DEFAULT_TRUSTED_PROXIES),
        host_aliases={},
    ), base_domain

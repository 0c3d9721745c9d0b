"""Everything the v2 service is configured with, parsed once into a frozen object."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.config import load_config
from controlplane.config.model import DEFAULT_BASE_DOMAIN, DEFAULT_PLATFORM_SUBDOMAINS, DEFAULT_TRUSTED_PROXIES
from controlplane.config.tenant import TenantRule
from controlplane.config.url_template import (
    DEFAULT_FINISH_URL_TEMPLATE,
    DEFAULT_NOTIFICATION_URL_TEMPLATE,
    FINISH_PLACEHOLDERS,
    NOTIFICATION_PLACEHOLDERS,
    UrlTemplate,
)
from proxy.v2.email_templates import TEMPLATES_DIR

VERSION = "2.0.0"


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How the outbox sends: bounded in time, retried with backoff, dead-lettered in the end."""

    send_timeout_s: float = 30.0  # one SMTP conversation, connect to QUIT; far inside the lease
    lease_s: float = 300.0  # a claimed row is claimable again after this (its worker died mid-send)
    retry_base_s: float = 60.0  # after a temporary failure: base, 2x, 4x ... capped at retry_max_s
    retry_max_s: float = 3600.0
    max_attempts: int = 8  # about 2 h of a relay being down (60 s .. 1 h); then dead, with the reason
    batch: int = 20  # rows claimed at once per tenant
    sweep_interval_s: float = 30.0  # every tenant is looked at this often (retries, restarts, other workers)
    tenant_concurrency: int = 4  # tenants sent for at once: one hung relay does not hold up the others

    def __post_init__(self) -> None:
        if not self.send_timeout_s * 2 <= self.lease_s:
            raise ValueError("the lease must outlast a send (lease_s >= 2 x send_timeout_s)")
        if self.max_attempts < 1 or self.batch < 1 or self.tenant_concurrency < 1:
            raise ValueError("max_attempts, batch and tenant_concurrency must be at least 1")


@dataclass(frozen=True, slots=True)
class ReadConfirmation:
    """When a status read asks Midtrans about a pending order (the buyer back from Snap before
    Midtrans' notification): recent orders only, bounded in time, and rationed."""

    timeout_s: float = 1.5  # the thank-you page waits at most this long more than usual
    recent_s: float = 3600.0  # orders created longer ago are left to notifications
    order_interval_s: float = 5.0  # at most one Get Status per order this often (the page polls)
    tenant_per_s: float = 5.0  # per tenant and worker: a steady rate ...
    tenant_burst: int = 20  # ... and a burst

    def __post_init__(self) -> None:
        if not 0 < self.timeout_s <= 5.0:
            raise ValueError("read confirmation timeout_s must be between 0 and 5 seconds")
        if self.tenant_per_s <= 0 or self.tenant_burst < 1:
            raise ValueError("read confirmation tenant_per_s must be positive and tenant_burst at least 1")


@dataclass(frozen=True, slots=True)
class V2Settings:
    database_url: str
    rule: TenantRule
    base_domain: str = DEFAULT_BASE_DOMAIN
    schema: str = "payments"
    # Where Midtrans sends each payment's notifications ({slug} and {base_domain} are filled in).
    notification_url_template: str = DEFAULT_NOTIFICATION_URL_TEMPLATE
    # Where Snap sends the buyer after paying, for a tenant without a finish URL of its own
    # ({slug}, {base_domain}, {order_id}).
    finish_url_template: str = DEFAULT_FINISH_URL_TEMPLATE
    snap_urls: dict[str, str] = field(default_factory=dict)
    # Midtrans' Core API base per environment (Get Status); defaults to Midtrans' own.
    core_urls: dict[str, str] = field(default_factory=dict)
    # How long a webhook waits for Get Status before answering 503 (Midtrans waits 15 s).
    status_timeout_s: float = 5.0
    read_confirmation: ReadConfirmation = field(default_factory=ReadConfirmation)
    pool_max_size: int = 10
    tenant_cache_ttl_s: float = 5.0
    version: str = VERSION
    email_templates: Path = TEMPLATES_DIR
    smtp_ca_file: str | None = None  # trust this CA for relays (a private relay); default: the system's
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)

    def __post_init__(self) -> None:
        # Refused here, at start-up, rather than by every create (TemplateError is a ValueError).
        UrlTemplate.parse(self.notification_url_template, NOTIFICATION_PLACEHOLDERS,
                          what="--notification-url-template")
        UrlTemplate.parse(self.finish_url_template, FINISH_PLACEHOLDERS, what="--finish-url-template")

    def notification_url(self, slug: str) -> str:
        template = UrlTemplate(self.notification_url_template, NOTIFICATION_PLACEHOLDERS)  # checked above
        return template.render(slug=slug, base_domain=self.base_domain)

    def finish_url(self, slug: str, order_id: str, tenant_template: UrlTemplate | None = None) -> str:
        """The tenant's own finish URL (a checked template) when it has one, else the service's."""
        template = tenant_template or UrlTemplate(self.finish_url_template, FINISH_PLACEHOLDERS)
        return template.render(slug=slug, base_domain=self.base_domain, order_id=order_id)


def tenant_rule(routing_file: str | Path | None, base_domain: str = DEFAULT_BASE_DOMAIN) -> tuple[TenantRule, str]:
    """The router's own resolution rule: from its routing file when given, else the config model's
    defaults (those of a routing file that names only its base domain)."""
    if routing_file is not None:
        config = load_config(routing_file)
        return TenantRule.from_config(config), config.base_domain
    return TenantRule(
        base_domain=base_domain, platform_subdomains=DEFAULT_PLATFORM_SUBDOMAINS,
        trusted_proxies=tuple(ipaddress.ip_network(n) for n in DEFAULT_TRUSTED_PROXIES),
        host_aliases={},
    ), base_domain

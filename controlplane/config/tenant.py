"""The one rule that identifies the tenant of a request, shared by the router and v2.

Priority:
1. `X-Tenant-Slug`, honoured only when the TCP peer is a trusted proxy;
2. the Host: an explicit `hosts` entry, or `<slug>.<base_domain>` (platform subdomains and deeper
   names are not tenants; ports stripped; case-insensitive);
3. `?tenant=`, only when the Host named no tenant.

The rule only *claims* a slug; whether that tenant exists is the caller's question (the router asks
its routing table, v2 its database). A Host that names a tenant-shaped subdomain is a claim even when
no such tenant exists, so `unknown.agentbar.ai/?tenant=buatfilm` is refused rather than rerouted.
No aiohttp import: the rule is a pure function of the request's parts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal
from urllib.parse import parse_qsl

from controlplane.config.model import SLUG_RE, IPNetwork, RoutingConfig

TENANT_HEADER: Final = "X-Tenant-Slug"
TENANT_QUERY: Final = "tenant"

ClaimSource = Literal["header", "host", "query"]


@dataclass(frozen=True, slots=True)
class TenantClaim:
    """A slug a request names, and where it named it. `valid` is False for a malformed slug."""

    slug: str
    source: ClaimSource

    @property
    def valid(self) -> bool:
        return SLUG_RE.fullmatch(self.slug) is not None


def strip_port(host: str) -> str:
    """`Example.COM:8080` -> `example.com`; `[::1]:80` -> `::1`; trailing dot removed."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


class TenantRule:
    """The resolution rule for one config snapshot. Cheap to call; build once per snapshot."""

    __slots__ = ("_aliases", "_base_suffix", "_hosts_by_slug", "_platform", "_trusted", "_trusted_check")

    def __init__(
        self,
        *,
        base_domain: str,
        platform_subdomains: frozenset[str],
        trusted_proxies: tuple[IPNetwork, ...],
        host_aliases: Mapping[str, str],
    ) -> None:
        self._base_suffix = "." + base_domain.lower()
        self._platform = platform_subdomains
        self._aliases = host_aliases
        by_slug: dict[str, list[str]] = {}
        for name, slug in host_aliases.items():
            by_slug.setdefault(slug, []).append(name)
        self._hosts_by_slug = {slug: tuple(sorted(names)) for slug, names in by_slug.items()}
        self._trusted = trusted_proxies
        self._trusted_check = lru_cache(maxsize=4096)(self._is_trusted_uncached)

    @classmethod
    def from_config(cls, config: RoutingConfig) -> TenantRule:
        return cls(
            base_domain=config.base_domain,
            platform_subdomains=config.platform_subdomains,
            trusted_proxies=config.trusted_proxies,
            host_aliases=config.host_aliases,
        )

    def _is_trusted_uncached(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._trusted)

    def peer_is_trusted(self, peer: str | None) -> bool:
        """Whether the TCP peer may set routing headers (X-Tenant-Slug, X-Request-ID)."""
        return peer is not None and self._trusted_check(peer)

    def hosts_of(self, slug: str) -> tuple[str, ...]:
        """The hosts that name this tenant: `<slug>.<base_domain>` and its routing-file `hosts`."""
        return (slug + self._base_suffix, *self._hosts_by_slug.get(slug, ()))

    def host_claim(self, host: str | None) -> str | None:
        if not host:
            return None
        name = strip_port(host)
        slug = self._aliases.get(name)
        if slug is not None:
            return slug
        if name.endswith(self._base_suffix):
            label = name[: -len(self._base_suffix)]
            if label and "." not in label and label not in self._platform:
                return label
        return None

    def claim(
        self,
        *,
        peer: str | None,
        header_slug: str | None,
        host: str | None,
        query_string: str,
    ) -> TenantClaim | None:
        """The tenant a request names, or None when it names none."""
        if header_slug is not None and self.peer_is_trusted(peer):
            return TenantClaim(header_slug.strip().lower(), "header")
        slug = self.host_claim(host)
        if slug is not None:
            return TenantClaim(slug, "host")
        if query_string:
            for key, value in parse_qsl(query_string, keep_blank_values=False):
                if key == TENANT_QUERY:
                    return TenantClaim(value.strip().lower(), "query")
        return None

"""The routing config: model (frozen, typed), load (strict YAML), validate (all issues), reload."""

from controlplane.config.issues import ConfigError, ConfigIssue
from controlplane.config.model import (
    BACKENDS,
    SLUG_RE,
    Backend,
    RoutingConfig,
    TenantSpec,
    UpstreamSpec,
)
from controlplane.config.reload import ConfigFile, ReloadOutcome
from controlplane.config.validate import load_config, load_config_text

__all__ = [
    "BACKENDS",
    "SLUG_RE",
    "Backend",
    "ConfigError",
    "ConfigFile",
    "ConfigIssue",
    "ReloadOutcome",
    "RoutingConfig",
    "TenantSpec",
    "UpstreamSpec",
    "load_config",
    "load_config_text",
]

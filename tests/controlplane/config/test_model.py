"""The routing snapshot itself: what a router's supervisor hands its workers (pickled) is the same config."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import MappingProxyType

from controlplane.config import load_config

EXAMPLE = Path(__file__).parents[3] / "configs" / "routing.example.yaml"


def test_a_config_survives_pickling_read_only() -> None:
    config = load_config(EXAMPLE)
    copy = pickle.loads(pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL))
    assert copy is not config
    assert copy.tenants == config.tenants and copy.upstreams == config.upstreams
    assert copy.host_aliases == config.host_aliases and copy.digest == config.digest
    assert copy.trusted_proxies == config.trusted_proxies and copy.limits == config.limits
    assert isinstance(copy.tenants, MappingProxyType) and isinstance(copy.host_aliases, MappingProxyType)

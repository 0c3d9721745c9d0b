"""A tenants-only change as a small delta: it gives the new snapshot back exactly, or there is none."""

from __future__ import annotations

import dataclasses
import pickle

from controlplane.config import RoutingConfig, load_config_text
from controlplane.config.delta import tenant_delta
from tests.conftest import routing_yaml

V1, V2 = "http://127.0.0.1:1", "http://127.0.0.1:2"
TENANTS = """\
buatfilm: {backend: v1, hosts: [shop.example.com]}
demo: {backend: v2}
gamma: {backend: v2, shadow: {sample_rate: 0.5}}
"""


def config(tenants: str, **options: str) -> RoutingConfig:
    return load_config_text(routing_yaml(V1, V2, tenants, v1_tenants=["buatfilm"], **options))


def same(a: RoutingConfig, b: RoutingConfig) -> None:
    """Every field equal, the order of the tenants included (RoutingConfig compares by identity)."""
    for field in dataclasses.fields(RoutingConfig):
        assert getattr(a, field.name) == getattr(b, field.name), field.name
    assert list(a.tenants.items()) == list(b.tenants.items())


def test_a_changed_tenant_is_all_the_delta_holds_and_patching_gives_the_new_snapshot() -> None:
    old = config(TENANTS)
    new = config(TENANTS.replace("demo: {backend: v2}", "demo: {backend: v2, webhooks: primary}"))
    delta = tenant_delta(old, new)
    assert delta is not None
    assert dict(delta.changed) == {"demo": new.tenants["demo"]} and delta.removed == frozenset()
    assert delta.digest == new.digest != old.digest
    same(delta.applied_to(old), new)
    # It travels (the supervisor pickles it for its workers), and is small.
    assert len(pickle.dumps(delta)) < len(pickle.dumps(new)) / 2


def test_added_removed_and_rehosted_tenants_keep_the_derived_host_aliases_right() -> None:
    old = config(TENANTS)
    new = config(TENANTS.replace("buatfilm: {backend: v1, hosts: [shop.example.com]}",
                                 "buatfilm: {backend: v1, hosts: [store.example.com]}")
                 .replace("gamma: {backend: v2, shadow: {sample_rate: 0.5}}\n", "")
                 + "zeta: {backend: v2, hosts: [zeta.example.org]}\n")
    delta = tenant_delta(old, new)
    assert delta is not None
    assert set(delta.changed) == {"buatfilm", "zeta"} and delta.removed == {"gamma"}
    assert delta.slugs() == {"buatfilm", "zeta", "gamma"}
    patched = delta.applied_to(old)
    same(patched, new)
    assert dict(patched.host_aliases) == {"store.example.com": "buatfilm", "zeta.example.org": "zeta"}


def test_an_unchanged_file_is_an_empty_delta() -> None:
    old = config(TENANTS)
    delta = tenant_delta(old, config(TENANTS))
    assert delta is not None and not delta.slugs()
    same(delta.applied_to(old), old)


def test_anything_but_tenants_changed_means_no_delta() -> None:
    old = config(TENANTS)
    assert tenant_delta(old, config(TENANTS, timeouts=", read_timeout_s: 5")) is None  # an upstream
    assert tenant_delta(old, load_config_text(routing_yaml(V1, V2, TENANTS))) is None  # upstreams.v1.tenants
    assert tenant_delta(old, load_config_text(routing_yaml(V1, V2, TENANTS, v1_tenants=["buatfilm"])
                                              .replace("agentbar.ai", "example.net"))) is None
    assert tenant_delta(old, config(TENANTS, trusted='["10.0.0.0/8"]')) is None


def test_a_tenant_written_between_others_means_no_delta() -> None:
    """Patching appends a new tenant; the file has it elsewhere: the order would differ, so no delta."""
    old = config(TENANTS)
    assert tenant_delta(old, config("alpha: {backend: v2}\n" + TENANTS)) is None
    assert tenant_delta(old, config(TENANTS + "alpha: {backend: v2}\n")) is not None

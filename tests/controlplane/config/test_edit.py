from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.config import ConfigError, load_config
from controlplane.config.edit import set_backend
from tests.conftest import REPO


def test_a_flip_changes_only_that_value(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    original = (REPO / "configs" / "routing.example.yaml").read_text()
    path.write_text(original)
    config = set_backend(path, "buatfilm", "v2")
    assert config.tenants["buatfilm"].backend == "v2" and load_config(path).tenants["buatfilm"].backend == "v2"
    before, after = original.splitlines(), path.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [("    backend: v1                    # v1 | v2: flip this to move the tenant; nothing else changes",
                        "    backend: v2                    # v1 | v2: flip this to move the tenant; nothing else changes")]
    set_backend(path, "buatfilm", "v1")
    assert path.read_text() == original  # and back, byte for byte


def test_flow_style_and_quotes(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text('upstreams: {v1: {url: "http://a:1", tenants: [shop]}, v2: {url: "http://b:2"}}\n'
                    'base_domain: agentbar.ai\n'
                    "tenants:\n  shop: {backend: \"v1\", hosts: [v1-shop.example.com]}  # keep me\n")
    set_backend(path, "shop", "v2")
    assert path.read_text().splitlines()[-1] == '  shop: {backend: "v2", hosts: [v1-shop.example.com]}  # keep me'


def test_unknown_tenants_and_broken_files_change_nothing(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text((REPO / "configs" / "routing.example.yaml").read_text())
    before = path.read_text()
    with pytest.raises(ConfigError, match="no such tenant entry"):
        set_backend(path, "nobody", "v2")
    path.write_text(before + "oops: [\n")
    with pytest.raises(ConfigError):
        set_backend(path, "buatfilm", "v2")
    assert path.read_text() == before + "oops: [\n"
    assert [p.name for p in tmp_path.iterdir()] == ["routing.yaml"]  # no temporary file left behind

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controlplane.config import ConfigError, ConfigFile

BASE = 'upstreams: {v1: {url: "http://a:1"}, v2: {url: "http://b:2"}}\nbase_domain: agentbar.ai\n'


def write(path: Path, text: str) -> None:
    # Replace atomically like editors do, and move mtime forward so a fast test sees a change.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    st = os.stat(path) if path.exists() else None
    os.replace(tmp, path)
    if st is not None:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_reload_swaps_on_change_and_keeps_the_last_good_config(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    write(path, BASE + "tenants: {buatfilm: {backend: v1}}\n")
    file = ConfigFile(path)
    first = file.load_initial()
    assert file.poll() is None  # nothing changed: no reload attempt at all

    write(path, BASE + "tenants: {buatfilm: {backend: v2}}\n")
    outcome = file.poll()
    assert outcome is not None and outcome.ok and outcome.config is not None
    assert outcome.config.tenants["buatfilm"].backend == "v2"
    assert first.tenants["buatfilm"].backend == "v1"  # the old snapshot never changes

    write(path, BASE + "tenants: {buatfilm: {backend: v9}}\n")
    outcome = file.poll()
    assert outcome is not None and not outcome.ok and outcome.config is None
    assert "unknown backend 'v9'" in str(outcome.issues[0])
    assert file.current is not None and file.current.tenants["buatfilm"].backend == "v2"
    assert file.poll() is None  # the same bad bytes are not re-reported every poll


def test_same_bytes_rewritten_is_not_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    write(path, BASE + "tenants: {}\n")
    file = ConfigFile(path)
    file.load_initial()
    write(path, BASE + "tenants: {}\n")
    assert file.poll() is None
    assert file.poll(force=True) is not None  # SIGHUP always re-reads


def test_a_deleted_file_is_reported_once_and_the_config_kept(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    write(path, BASE + "tenants: {}\n")
    file = ConfigFile(path)
    file.load_initial()
    path.unlink()
    outcome = file.poll()
    assert outcome is not None and not outcome.ok and "file not found" in str(outcome.issues[0])
    assert file.poll() is None
    write(path, BASE + "tenants: {x: {backend: v1}}\n")
    outcome = file.poll()
    assert outcome is not None and outcome.ok


def test_initial_load_fails_loudly(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text("tenants: {")
    with pytest.raises(ConfigError):
        ConfigFile(path).load_initial()

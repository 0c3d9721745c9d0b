from __future__ import annotations

import os
import threading
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
    held = BASE.replace('"http://a:1"}', '"http://a:1", tenants: [buatfilm]}')  # whose orders v1 holds
    write(path, held + "tenants: {buatfilm: {backend: v1}}\n")
    file = ConfigFile(path)
    first = file.load_initial()
    assert file.poll() is None  # nothing changed: no reload attempt at all

    write(path, held + "tenants: {buatfilm: {backend: v2}}\n")
    outcome = file.poll()
    assert outcome is not None and outcome.ok and outcome.config is not None
    assert outcome.config.tenants["buatfilm"].backend == "v2"
    assert first.tenants["buatfilm"].backend == "v1"  # the old snapshot never changes

    write(path, held + "tenants: {buatfilm: {backend: v9}}\n")
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
    write(path, BASE + "tenants: {x: {backend: v2}}\n")
    outcome = file.poll()
    assert outcome is not None and outcome.ok


def test_initial_load_fails_loudly(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text("tenants: {")
    with pytest.raises(ConfigError):
        ConfigFile(path).load_initial()


def test_a_file_saved_in_place_is_not_loaded_half_written(tmp_path: Path) -> None:
    """nano and `cat >` truncate the file and write it in pieces; a first half that is valid on its
    own (here: without tenant `other`) must never become the routing."""
    path = tmp_path / "routing.yaml"
    base = BASE.replace('"http://a:1"}', '"http://a:1", tenants: [buatfilm, other]}')
    whole = base + "tenants:\n  buatfilm: {backend: v1}\n  other: {backend: v1}\n"
    half = base + "tenants:\n  buatfilm: {backend: v1}\n"
    write(path, whole)
    file = ConfigFile(path, settle_s=0.25, settle_timeout_s=0.75)
    file.load_initial()
    started, finish = threading.Event(), threading.Event()

    def save_in_place() -> None:
        with open(path, "w") as out:  # truncates, like an editor saving in place
            out.write(half)
            out.flush()
            started.set()
            while not finish.wait(0.003):  # still typing / still being pasted
                out.write("#\n")
                out.flush()
            out.write("  other: {backend: v1}\n")

    writer = threading.Thread(target=save_in_place)
    writer.start()
    try:
        started.wait()
        during = file.poll()
    finally:
        finish.set()
        writer.join()
    assert during is not None and not during.ok, "a half-written file was loaded"
    assert "still being written" in str(during.issues[0])
    assert file.current is not None and set(file.current.tenants) == {"buatfilm", "other"}
    after = file.poll()
    assert after is not None and after.ok and after.config is not None
    assert set(after.config.tenants) == {"buatfilm", "other"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("x: &a [*a]\n", "aliases (*a) are not allowed"),
        ("a: " + "{a: " * 500 + "}" * 500 + "\n", "nested deeper than"),
        (BASE + "tenants: {}\nshadow: {queue_size: " + "1" * 5000 + "}\n", "number of 5000 characters"),
        (BASE.replace('"http://a:1"}', '"http://a:1", read_timeout_s: .nan}') + "tenants: {}\n",
         "upstreams.v1.read_timeout_s: must be a finite number, got nan"),
    ],
    ids=["self-alias", "deep", "5000-digits", "nan"],
)
def test_a_hostile_file_is_a_rejected_reload_and_the_next_good_one_loads(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = tmp_path / "routing.yaml"
    write(path, BASE + "tenants: {a: {backend: v2}}\n")
    file = ConfigFile(path, settle_s=0.01)
    file.load_initial()
    write(path, text)
    outcome = file.poll()
    assert outcome is not None and not outcome.ok
    assert any(fragment in str(issue) for issue in outcome.issues), outcome.issues
    write(path, BASE + "tenants: {a: {backend: v2, hosts: [a.example.com]}}\n")
    outcome = file.poll()
    assert outcome is not None and outcome.ok and outcome.config is not None
    assert outcome.config.tenants["a"].hosts == ("a.example.com",)

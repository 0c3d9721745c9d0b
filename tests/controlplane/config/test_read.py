"""Reading the routing file: regular files only, bounded, never blocking on a FIFO."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from controlplane.config import ConfigError, load_config
from controlplane.config.read import MAX_FILE_BYTES, read_regular, read_settled
from tests.conftest import fifo_unblocker


def issue_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (issue,) = info.value.issues
    return str(issue)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    os.mkfifo(path)
    with fifo_unblocker(path):
        assert issue_of(path) == f"{path}: (document): not a regular file (a FIFO); only regular files are read"


def test_a_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.mkdir()
    assert issue_of(path) == f"{path}: (document): not a regular file (a directory); only regular files are read"


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    with open(path, "wb") as out:
        out.truncate(45 * 1024 * 1024)  # sparse: 45 MB that cost nothing to write
    assert issue_of(path) == f"{path}: (document): file too large: {45 * 1024 * 1024} bytes (at most {MAX_FILE_BYTES})"


def test_missing_and_nul_paths_are_issues(tmp_path: Path) -> None:
    assert issue_of(tmp_path / "absent.yaml") == f"{tmp_path / 'absent.yaml'}: (document): file not found"
    with pytest.raises(ConfigError, match="cannot read"):
        read_regular(str(tmp_path / "a\0b"))


def test_read_settled_returns_a_still_file(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_bytes(b"a: 1\n")
    contents = read_settled(path, settle_s=0.01, timeout_s=1.0)
    assert contents.raw == b"a: 1\n" and contents.stamp[1] == 5


def test_read_settled_refuses_a_file_that_keeps_changing(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_bytes(b"a: 1\n")
    stop = threading.Event()

    def scribble() -> None:
        with open(path, "ab", buffering=0) as out:
            while not stop.wait(0.002):
                out.write(b"#\n")

    writer = threading.Thread(target=scribble)
    writer.start()
    try:
        with pytest.raises(ConfigError, match="still being written"):
            read_settled(path, settle_s=0.25, timeout_s=0.6)
    finally:
        stop.set()
        writer.join()


def test_read_settled_reads_a_file_written_long_ago_once(tmp_path: Path) -> None:
    """No settle wait for a file last written long before (a router starting): with a settle time of
    an hour, waiting would end the test by its timeout."""
    path = tmp_path / "routing.yaml"
    path.write_bytes(b"a: 1\n")
    long_ago = time.time() - 7200
    os.utime(path, (long_ago, long_ago))
    contents = read_settled(path, settle_s=3600, timeout_s=7200)
    assert contents.raw == b"a: 1\n"

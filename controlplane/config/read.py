"""Reading the routing file from disk: a regular file only, bounded in size, and only once it is still.

A FIFO or a device in place of the file would block a reader or never end, so the file's type is
checked before it is opened and again on the open descriptor (which is opened non-blocking). An
editor that saves in place (nano, `cat >`) leaves a half-written file on disk for a moment, and its
first half may be valid on its own: `read_settled` reads until two reads a short interval apart
agree on size, mtime, inode and content (a file last written long before is read once).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from controlplane.config.issues import ConfigError, ConfigIssue

# A routing file of a thousand tenants is about 100 KB; ten times that is a generous ceiling and
# keeps one parse to a few seconds of CPU at most (bench/config_load.py), in a thread off the loop.
MAX_FILE_BYTES: Final = 1024 * 1024

Stamp = tuple[int, int, int]  # (mtime_ns, size, inode)
# Some filesystems keep modification times to the second: a file counts as written long ago only
# when its mtime is older than the settle time by more than that.
MTIME_GRANULARITY_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class FileContents:
    raw: bytes
    stamp: Stamp
    digest: str  # sha256 of raw, hex


def stamp_of(path: str | Path) -> Stamp | None:
    """What a cheap change check compares (None when the file cannot be stat'ed)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _refuse(source: str, message: str) -> ConfigError:
    return ConfigError((ConfigIssue(source, 0, "", message),))


def _check_regular(source: str, st: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) \
            else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device or other special file"
        raise _refuse(source, f"not a regular file ({kind}); only regular files are read")
    if st.st_size > max_bytes:
        raise _refuse(source, f"file too large: {st.st_size} bytes (at most {max_bytes})")


def read_regular(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> FileContents:
    """Read a regular file of at most `max_bytes`; raise ConfigError (line 0) for anything else."""
    source = str(path)
    try:
        _check_regular(source, os.stat(path), max_bytes)
        # O_NONBLOCK: should the path become a FIFO between the check and the open, neither blocks.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
        try:
            st = os.fstat(fd)
            _check_regular(source, st, max_bytes)
            chunks: list[bytes] = []
            left = max_bytes + 1
            while left > 0 and (chunk := os.read(fd, min(left, 256 * 1024))):
                chunks.append(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
    except FileNotFoundError:
        raise _refuse(source, "file not found") from None
    except OSError as exc:
        raise _refuse(source, f"cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:  # a NUL byte in the path
        raise _refuse(source, f"cannot read: {exc}") from None
    raw = b"".join(chunks)
    if len(raw) > max_bytes:
        raise _refuse(source, f"file too large: it grew past {max_bytes} bytes while being read")
    return FileContents(raw, (st.st_mtime_ns, st.st_size, st.st_ino), hashlib.sha256(raw).hexdigest())


def _still_since(path: str | Path, stamp: Stamp, seconds: float) -> bool:
    """Whether the file is as it was read, and was last written at least `seconds` ago."""
    return stamp_of(path) == stamp and time.time() - stamp[0] / 1e9 >= seconds


def read_settled(path: str | Path, settle_s: float, timeout_s: float,
                 max_bytes: int = MAX_FILE_BYTES) -> FileContents:
    """Read until two reads `settle_s` apart agree; ConfigError if the file keeps changing for `timeout_s`.

    Blocks (sleeps) for at least `settle_s`, unless the file was last written well before that
    (a router starting on a file saved long ago): call it from a thread, never on an event loop."""
    previous = read_regular(path, max_bytes)
    if settle_s <= 0 or _still_since(path, previous.stamp, settle_s + MTIME_GRANULARITY_S):
        return previous
    deadline = time.monotonic() + timeout_s
    while True:
        time.sleep(settle_s)
        current = read_regular(path, max_bytes)
        if current.stamp == previous.stamp and current.digest == previous.digest:
            return current
        if time.monotonic() >= deadline:
            raise _refuse(str(path), f"still being written: it changed between every two reads "
                                     f"{settle_s:g} s apart for {timeout_s:g} s; not loaded yet")
        previous = current

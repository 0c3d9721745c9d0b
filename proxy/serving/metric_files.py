"""The multiprocess metrics folder (PROMETHEUS_MULTIPROC_DIR) across worker restarts.

prometheus_client keeps a dead worker's counter and histogram files (its totals must still count),
so each restart added files that every later scrape re-read, until the server restarted. The
supervisor folds a dead worker's files into one archive file per kind, key by key (the sum a scrape
computes anyway), and removes them: the folder holds one file per kind per live worker, plus the
archives.

A scrape reading the folder halfway through a fold would count the dead worker twice or not at all,
which Prometheus takes for a counter reset: a fold holds an exclusive lock on the folder's lock file,
and every scrape a shared one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

LOCK_FILE: Final = "folding.lock"  # not *.db: the collector never reads it
# The kinds whose files outlive their worker (live gauges are removed by mark_process_dead).
FOLDED_KINDS: Final = ("counter", "histogram", "summary")
ARCHIVE: Final = "archive"  # counter_archive.db: the collector reads the kind before the first "_"


@contextlib.contextmanager
def folder_lock(folder: str | Path, *, exclusive: bool) -> Iterator[None]:
    fd = os.open(Path(folder) / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def fold_dead_worker(folder: str | Path, pid: int) -> int:
    """Add a dead worker's counter, histogram and summary values to the archives and remove its
    files; returns how many files were folded."""
    folded = 0
    with folder_lock(folder, exclusive=True):
        for kind in FOLDED_KINDS:
            dead = Path(folder) / f"{kind}_{pid}.db"
            if not dead.exists():
                continue
            archive = MmapedDict(str(Path(folder) / f"{kind}_{ARCHIVE}.db"))  # type: ignore[no-untyped-call]
            try:
                for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(dead)):  # type: ignore[no-untyped-call]
                    total, latest = archive.read_value(key)  # type: ignore[no-untyped-call]
                    archive.write_value(key, total + value, max(latest, timestamp))  # type: ignore[no-untyped-call]
            finally:
                archive.close()  # type: ignore[no-untyped-call]
            dead.unlink()
            folded += 1
    return folded


class LockedCollector:
    """The multiprocess collector, reading the folder under the shared lock (never during a fold)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._collector = MultiProcessCollector(None, path=folder)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        with folder_lock(self.folder, exclusive=False):
            return list(self._collector.collect())  # type: ignore[no-untyped-call]

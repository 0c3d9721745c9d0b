"""The routing snapshot a router's supervisor hands its workers: the file parsed once, not once per worker.

With `--workers N` (N > 1) the supervisor owns the routing file: it polls it (every 0.5 s, and at
once on SIGHUP) and parses a changed file once, in a process that serves no request. Each outcome (a
new snapshot, or a rejection that keeps the last good one) is pickled to one file in a folder of
the supervisor's own, replaced atomically, and every worker is told over its own pipe with a
16-byte notice: when the watcher ran, and the outcome's sequence number. A worker unpickles the
file and builds its routing table in a thread, then swaps the table in on its loop
(RouterState.follow). At 10,000 tenants parsing is about a second of CPU; unpickling is tens of
milliseconds.

Beside the full outcome the supervisor writes the same outcome as a delta from the one before, when
only tenant entries changed (or nothing did: a rejection): a few hundred bytes instead of hundreds of
KB. A worker holding the delta's base generation patches its snapshot and routes for the changed
tenants only; any other worker, or any other change, takes the full outcome. Each of those CPU
milliseconds holds the GIL its event loop needs, so a full take at every reload doubled p99.

A worker starts (forked) from the supervisor's latest outcome, already parsed. Notices are written
without blocking: a worker too busy to read its pipe misses heartbeats, never makes the supervisor
wait, and reads the latest outcome at the next notice it does read. The folder is the supervisor's
own (mode 0700), so the pickles it holds come only from the supervisor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from controlplane.config import ConfigFile, ConfigIssue, ReloadOutcome, RoutingConfig
from controlplane.config.delta import TenantDelta, tenant_delta

log = logging.getLogger(__name__)

# How often the supervisor polls the routing file (a change takes effect within this plus its parse).
POLL_INTERVAL_S: Final = 0.5
# One notice: when the supervisor's watcher ran (Unix time, s) and the latest outcome's sequence.
NOTICE: Final = struct.Struct("!dQ")
OUTCOME_FILE: Final = "outcome.pickle"
DELTA_FILE: Final = "delta.pickle"  # the same outcome, as a delta from the one before, beside it


@dataclass(frozen=True, slots=True)
class Published:
    """One outcome of the supervisor's watcher, with the last good snapshot (a rejection keeps it)."""

    seq: int  # one per outcome, good or rejected
    generation: int  # one per good snapshot
    config: RoutingConfig  # the last good snapshot
    ok: bool  # whether this outcome was a good snapshot (else `issues` say why it was rejected)
    issues: tuple[ConfigIssue, ...]
    at_s: float  # wall-clock time of the attempt
    parsed_by_pid: int  # the process that parsed it (the supervisor)
    parse_s: float  # how long reading and parsing took there


@dataclass(frozen=True, slots=True)
class PublishedDelta:
    """One outcome as a change to the snapshot of generation `base_generation` (the one before):
    `delta` None when anything but tenants changed, so only the full outcome can say it."""

    seq: int
    generation: int
    base_generation: int
    delta: TenantDelta | None
    ok: bool
    issues: tuple[ConfigIssue, ...]
    at_s: float
    parsed_by_pid: int
    parse_s: float

    def patches(self, base: Published) -> bool:
        """Whether this delta turns `base` into this outcome (else the full outcome is needed)."""
        return self.delta is not None and base.generation == self.base_generation and self.seq > base.seq

    def applied_to(self, base: Published) -> Published:
        """The outcome, from `base` (check `patches` first)."""
        assert self.delta is not None and base.generation == self.base_generation
        config = base.config if self.generation == base.generation else self.delta.applied_to(base.config)
        return Published(self.seq, self.generation, config, self.ok, self.issues, self.at_s, self.parsed_by_pid,
                         self.parse_s)


@dataclass(frozen=True, slots=True)
class Handout:
    """What one worker is handed when it starts: the latest outcome, and where the next ones come from."""

    published: Published
    notices_fd: int  # the read end of this worker's notice pipe
    outcome_path: Path  # the latest outcome, pickled
    supervisor_pid: int  # SIGHUP to it: parse the file now and publish (RouterState.refresh)
    # The supervisor's other pipe ends, open when this worker was forked: the worker closes them, so
    # its pipe reads end-of-file once the supervisor is gone (no other writer holds it open).
    inherited_fds: tuple[int, ...] = ()

    @property
    def delta_path(self) -> Path:
        return self.outcome_path.with_name(DELTA_FILE)

    def close_inherited(self) -> None:
        for fd in self.inherited_fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def load_published(path: Path) -> Published:
    """Read the latest outcome (blocking: a worker runs it in a thread)."""
    published = pickle.loads(path.read_bytes())  # written by our own supervisor, in its 0700 folder
    if not isinstance(published, Published):
        raise TypeError(f"{path} holds a {type(published).__name__}, not a published routing outcome")
    return published


def load_delta(path: Path) -> PublishedDelta:
    """Read the latest outcome as a delta (blocking: a worker runs it in a thread)."""
    news = pickle.loads(path.read_bytes())  # written by our own supervisor, in its 0700 folder
    if not isinstance(news, PublishedDelta):
        raise TypeError(f"{path} holds a {type(news).__name__}, not a published routing delta")
    return news


class RoutingPublisher:
    """The supervisor's side (a proxy.serving.workers.Supervision): poll, parse once, tell every worker."""

    poll_interval_s = POLL_INTERVAL_S

    def __init__(self, config_file: ConfigFile) -> None:
        """Load the file a first time; raises ConfigError (no worker starts without a good snapshot)."""
        self.config_file = config_file
        started = time.perf_counter()
        config = config_file.load_initial()
        self.latest = Published(1, 1, config, True, (), time.time(), os.getpid(), time.perf_counter() - started)
        self.folder = Path(tempfile.mkdtemp(prefix="dualstack-routing-"))
        self.outcome_path = self.folder / OUTCOME_FILE
        self._write(self.latest, None)
        self._pipes: dict[int, int] = {}  # a worker's read end -> the write end kept here
        self._handing_failed = False
        log.info("routing parsed once in %.2f s for every worker: %s", self.latest.parse_s, config.summary())

    def poll(self, *, forced: bool) -> None:
        started = time.perf_counter()
        outcome = self.config_file.poll(force=forced)  # never raises: a failure is a rejected outcome
        if outcome is not None:
            published = self._next(outcome, time.perf_counter() - started)
            try:
                self._write(published, self._delta(published))
            except Exception:  # the workers keep what they have; the supervisor must live on
                if not self._handing_failed:
                    log.exception("cannot hand the workers routing generation %d; they keep generation %d; "
                                  "trying again at every poll", published.generation, self.latest.generation)
                self._handing_failed = True
                self.config_file.forget_attempt()  # the next poll reads and hands it again
            else:
                if self._handing_failed:
                    log.warning("routing handed to the workers again (generation %d)", published.generation)
                self._handing_failed = False
                self.latest = published
                if outcome.ok:
                    log.info("routing generation %d parsed once in %.2f s for every worker",
                             published.generation, published.parse_s)
        notice = NOTICE.pack(time.time(), self.latest.seq)
        for write_fd in self._pipes.values():
            # A worker that does not read its pipe misses notices; the supervisor never waits for it.
            with contextlib.suppress(BlockingIOError, BrokenPipeError):
                os.write(write_fd, notice)

    def attach(self) -> Handout:
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        self._pipes[read_fd] = write_fd
        inherited = tuple(fd for pair in self._pipes.items() for fd in pair if fd != read_fd)
        return Handout(self.latest, read_fd, self.outcome_path, os.getpid(), inherited)

    def detach(self, handout: Handout) -> None:
        write_fd = self._pipes.pop(handout.notices_fd, None)
        if write_fd is not None:
            os.close(write_fd)
            os.close(handout.notices_fd)

    def close(self) -> None:
        for read_fd, write_fd in self._pipes.items():
            os.close(read_fd)
            os.close(write_fd)
        self._pipes.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _next(self, outcome: ReloadOutcome, parse_s: float) -> Published:
        previous = self.latest
        if outcome.ok and outcome.config is not None:
            return Published(previous.seq + 1, previous.generation + 1, outcome.config, True, (), outcome.at_s,
                             os.getpid(), parse_s)
        return Published(previous.seq + 1, previous.generation, previous.config, False, outcome.issues,
                         outcome.at_s, previous.parsed_by_pid, previous.parse_s)

    def _delta(self, published: Published) -> TenantDelta | None:
        """`published` as a change to the latest outcome, if only tenants changed (or nothing did)."""
        previous = self.latest
        if published.generation == previous.generation:  # a rejection: the snapshot is the same
            return TenantDelta({}, frozenset(), previous.config.digest)
        return tenant_delta(previous.config, published.config)

    def _write(self, published: Published, delta: TenantDelta | None) -> None:
        """The full outcome, then the same as a delta (None: it must be taken in full). Each file is
        whole and true on its own (a worker checks a delta's base), so their order is only for speed."""
        self.folder.mkdir(mode=0o700, exist_ok=True)  # a /tmp cleaner may have removed it
        base_generation = self.latest.generation if delta is not None else 0
        news = PublishedDelta(published.seq, published.generation, base_generation, delta, published.ok,
                              published.issues, published.at_s, published.parsed_by_pid, published.parse_s)
        for path, value in ((self.outcome_path, published), (self.outcome_path.with_name(DELTA_FILE), news)):
            partial = path.with_suffix(".partial")
            partial.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
            os.replace(partial, path)  # a worker reads the old outcome or the new, never half of one

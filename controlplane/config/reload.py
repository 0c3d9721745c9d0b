"""Live reload of the routing file: load -> validate -> hand over one new snapshot, or keep the last.

`ConfigFile.poll()` is cheap when nothing changed (one stat). It is driven by whoever owns the
loop (the router polls it twice a second and on SIGHUP); this module does no scheduling itself.
A poll that finds a change blocks: it reads the file until it has stopped changing (at least
`settle_s`) and then parses it, so an event loop runs it in a thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from controlplane.config.issues import ConfigError, ConfigIssue
from controlplane.config.model import RoutingConfig
from controlplane.config.read import Stamp, read_settled, stamp_of
from controlplane.config.validate import load_config_bytes

# An editor writes a routing file in milliseconds; a file unchanged for this long is taken as saved.
SETTLE_S: Final = 0.2
# A file still changing after this long is reported (and tried again at the next poll).
SETTLE_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """The result of one reload attempt. `config` is the new snapshot when `ok`."""

    ok: bool
    config: RoutingConfig | None
    issues: tuple[ConfigIssue, ...]
    at_s: float  # wall-clock time of the attempt


class ConfigFile:
    """A routing file on disk and the last good snapshot read from it. Not for concurrent polls."""

    def __init__(self, path: str | Path, *, settle_s: float = SETTLE_S,
                 settle_timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.settle_s = settle_s
        self.settle_timeout_s = settle_timeout_s
        self._stamp: Stamp | None = None
        self._attempted_digest: str | None = None
        self.current: RoutingConfig | None = None

    def forget_attempt(self) -> None:
        """Try the file again at the next poll, even unchanged (what was read could not be handed on)."""
        self._stamp, self._attempted_digest = None, None

    def load_initial(self) -> RoutingConfig:
        """First load; raises ConfigError (there is no last good config to fall back to)."""
        outcome = self.poll(force=True)
        if outcome is None or not outcome.ok or outcome.config is None:
            raise ConfigError(outcome.issues if outcome else ())
        return outcome.config

    def poll(self, *, force: bool = False) -> ReloadOutcome | None:
        """Reload if the file changed (or `force`); None when there was nothing new to try.

        Never raises: whatever goes wrong is a rejected reload carrying an issue."""
        stamp = stamp_of(self.path)
        if not force and stamp == self._stamp:
            return None  # unchanged (or still missing, which was already reported)
        now = time.time()
        try:
            return self._load(stamp, force=force, now=now)
        except ConfigError as exc:
            return ReloadOutcome(False, None, exc.issues, now)
        except Exception as exc:  # a bug in the loader must not end the reloads
            self._stamp, self._attempted_digest = stamp, None
            issue = ConfigIssue(str(self.path), 0, "", f"cannot load: {type(exc).__name__}: {exc}")
            return ReloadOutcome(False, None, (issue,), now)

    def _load(self, stamp: Stamp | None, *, force: bool, now: float) -> ReloadOutcome | None:
        try:
            contents = read_settled(self.path, self.settle_s, self.settle_timeout_s)
        except ConfigError:
            # Reported once per stamp; a file still being written has a new stamp at the next poll.
            self._stamp, self._attempted_digest = stamp, None
            raise
        self._stamp = contents.stamp
        if not force and contents.digest == self._attempted_digest:
            return None  # touched, or rewritten with the same bytes
        self._attempted_digest = contents.digest
        config = load_config_bytes(contents.raw, str(self.path), contents.digest)
        self.current = config
        return ReloadOutcome(True, config, (), now)

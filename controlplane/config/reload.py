"""Live reload of the routing file: load -> validate -> hand over one new snapshot, or keep the last.

`ConfigFile.poll()` is cheap when nothing changed (one stat). It is driven by whoever owns the
loop (the router polls it twice a second and on SIGHUP); this module does no scheduling itself.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from controlplane.config.issues import ConfigError, ConfigIssue
from controlplane.config.load import parse_document
from controlplane.config.model import RoutingConfig
from controlplane.config.validate import build_config


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """The result of one reload attempt. `config` is the new snapshot when `ok`."""

    ok: bool
    config: RoutingConfig | None
    issues: tuple[ConfigIssue, ...]
    at_s: float  # wall-clock time of the attempt


class ConfigFile:
    """A routing file on disk and the last good snapshot read from it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._attempted_digest: str | None = None
        self.current: RoutingConfig | None = None

    def load_initial(self) -> RoutingConfig:
        """First load; raises ConfigError (there is no last good config to fall back to)."""
        outcome = self.poll(force=True)
        if outcome is None or not outcome.ok or outcome.config is None:
            raise ConfigError(outcome.issues if outcome else ())
        return outcome.config

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def poll(self, *, force: bool = False) -> ReloadOutcome | None:
        """Reload if the file changed (or `force`); None when there was nothing new to try."""
        stamp = self._stat()
        if not force and stamp == self._stamp:
            return None  # unchanged (or still missing, which was already reported)
        self._stamp = stamp
        now = time.time()
        source = str(self.path)
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            self._attempted_digest = None
            message = "file not found" if isinstance(exc, FileNotFoundError) else exc.strerror
            return ReloadOutcome(False, None, (ConfigIssue(source, 0, "", str(message)),), now)
        digest = hashlib.sha256(raw).hexdigest()
        if not force and digest == self._attempted_digest:
            return None  # touched, or rewritten with the same bytes
        self._attempted_digest = digest
        try:
            text = raw.decode("utf-8")
            config = build_config(parse_document(text, source), digest=digest)
        except UnicodeDecodeError as exc:
            issue = ConfigIssue(source, 1, "", f"not UTF-8 text (byte {exc.start})")
            return ReloadOutcome(False, None, (issue,), now)
        except ConfigError as exc:
            return ReloadOutcome(False, None, exc.issues, now)
        self.current = config
        return ReloadOutcome(True, config, (), now)

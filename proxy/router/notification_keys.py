"""The Midtrans keys the router checks notifications with, before any backend sees one.

v1 applies any notification, signed or not; the router shields it by verifying the signature
itself (proxy/serving/signature.py), and must do so without v2 being up. Two sources, one chosen
by the environment (`key_store_from_environment`), never both:

- `DatabaseKeyStore`: the payments database, as the router's own role (`dualstack_router`), which
  may call `notification_key(slug)` and read nothing else. Keys are cached (bounded, LRU) for
  `ttl_s`; while PostgreSQL cannot be reached, a key read within `max_stale_s` is still used, so a
  short outage does not stop verification. Without any such key, `KeysUnavailable`: answer so that
  Midtrans retries (503). Lookups are serialised (a miss is rare: once per tenant per TTL) and
  after a failure the database is left alone for `retry_after_s`, so an outage costs requests no
  waiting.
- `FileKeyStore`: `slug=key` lines in a file only its owner can read (mode 0600), re-read when it
  changes; a broken edit keeps the last good keys.

A key is a `NotificationKey`: its repr is redacted, and nothing here logs one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import psycopg
from psycopg import sql

from controlplane.config.model import SLUG_RE
from proxy.serving.secret import Secret

log = logging.getLogger(__name__)

KEYS_FILE_ENV: Final = "DUALSTACK_MIDTRANS_KEYS_FILE"
DATABASE_URL_ENV: Final = "DUALSTACK_ROUTER_DATABASE_URL"
SCHEMA_ENV: Final = "DUALSTACK_ROUTER_DATABASE_SCHEMA"
MAX_FILE_BYTES: Final = 1 << 20


# A tenant's Midtrans server key; `reveal()` it only to compute a signature.
NotificationKey = Secret


class KeysUnavailable(Exception):
    """No key can be had now (the database is unreachable and none was read recently)."""


class KeyStoreError(Exception):
    """The key source is misconfigured; the message says what to fix and never holds a key."""


class KeyStore(Protocol):
    async def key_for(self, slug: str) -> NotificationKey | None:
        """The tenant's key, None for a tenant without one; raises KeysUnavailable."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Entry:
    read_at: float
    key: NotificationKey | None


class DatabaseKeyStore:
    def __init__(self, database_url: str, schema: str = "payments", *, ttl_s: float = 60.0,
                 negative_ttl_s: float = 10.0, max_stale_s: float = 900.0, retry_after_s: float = 5.0,
                 timeout_s: float = 2.0, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._url = database_url
        self._query = sql.SQL("SELECT {}.notification_key(%s)").format(sql.Identifier(schema))
        self._schema = schema
        self._ttl_s, self._negative_ttl_s, self._max_stale_s = ttl_s, negative_ttl_s, max_stale_s
        self._retry_after_s, self._timeout_s, self._max_entries = retry_after_s, timeout_s, max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = asyncio.Lock()
        self._conn: psycopg.AsyncConnection[tuple[str | None]] | None = None
        self._abandoned: psycopg.AsyncConnection[tuple[str | None]] | None = None
        self._down_until = 0.0
        self.queries = 0  # lookups that reached the database

    def __repr__(self) -> str:  # never the URL: it may carry a password
        return f"DatabaseKeyStore(schema={self._schema!r}, cached={len(self._entries)})"

    def __len__(self) -> int:
        return len(self._entries)

    async def key_for(self, slug: str) -> NotificationKey | None:
        if not SLUG_RE.fullmatch(slug):
            return None  # no tenant can have this name: nothing to ask
        entry = self._fresh(slug)
        if entry is not None:
            return entry.key
        async with self._lock:
            entry = self._fresh(slug)  # filled while this lookup waited for the one before
            if entry is not None:
                return entry.key
            if self._clock() < self._down_until:
                return self._stale(slug)
            try:
                key = await asyncio.wait_for(self._read(slug), timeout=self._timeout_s)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                await self._failed(exc)
                return self._stale(slug)
            except asyncio.CancelledError:
                # A query may still be in flight on the connection: the next lookup closes it and
                # connects afresh.
                self._abandoned, self._conn = self._conn, None
                raise
            if self._down_until:
                log.info("notification keys: the database answers again")
                self._down_until = 0.0
            self._remember(slug, key)
            return key

    async def prefetch(self, slugs: Iterable[str]) -> None:
        """Read the keys of known tenants now, so an outage soon after start finds them cached."""
        for slug in slugs:
            try:
                await self.key_for(slug)
            except KeysUnavailable:
                return

    async def close(self) -> None:
        for conn in (self._conn, self._abandoned):
            if conn is not None:
                await _close_quietly(conn)
        self._conn = self._abandoned = None

    def _fresh(self, slug: str) -> _Entry | None:
        entry = self._entries.get(slug)
        if entry is None:
            return None
        ttl = self._ttl_s if entry.key is not None else self._negative_ttl_s
        if self._clock() - entry.read_at >= ttl:
            return None
        self._entries.move_to_end(slug)
        return entry

    def _stale(self, slug: str) -> NotificationKey | None:
        entry = self._entries.get(slug)
        if entry is None or self._clock() - entry.read_at >= self._max_stale_s:
            raise KeysUnavailable(f"no notification key for tenant {slug} can be read now")
        return entry.key

    async def _read(self, slug: str) -> NotificationKey | None:
        if self._abandoned is not None:
            abandoned, self._abandoned = self._abandoned, None
            await _close_quietly(abandoned)
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=max(1, round(self._timeout_s)),
                options=f"-c statement_timeout={int(self._timeout_s * 1000)}")
        self.queries += 1
        cursor = await self._conn.execute(self._query, (slug,))
        row = await cursor.fetchone()
        value = row[0] if row is not None else None
        return NotificationKey(value) if value else None

    async def _failed(self, exc: BaseException) -> None:
        if not self._down_until:
            log.warning("notification keys: cannot read the database (%s); using keys read within "
                        "the last %.0f s", type(exc).__name__, self._max_stale_s)
        self._down_until = self._clock() + self._retry_after_s
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close_quietly(conn)

    def _remember(self, slug: str, key: NotificationKey | None) -> None:
        self._entries[slug] = _Entry(self._clock(), key)
        self._entries.move_to_end(slug)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)


async def _close_quietly(conn: psycopg.AsyncConnection[tuple[str | None]]) -> None:
    with contextlib.suppress(psycopg.Error, OSError):
        await conn.close()


def parse_keys_file(path: Path) -> dict[str, NotificationKey]:
    """`slug=key` lines (blank lines and `#` comments allowed); the file must be private (0600)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise KeyStoreError(f"{path}: cannot read the keys file ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyStoreError(f"{path}: not a regular file")
    if info.st_mode & 0o077:
        raise KeyStoreError(f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets others read or change "
                            "Midtrans keys; make it readable by its owner only (chmod 600)")
    if info.st_size > MAX_FILE_BYTES:
        raise KeyStoreError(f"{path}: larger than {MAX_FILE_BYTES} bytes; not a keys file")
    keys: dict[str, NotificationKey] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        slug, equals, key = (part.strip() for part in text.partition("="))
        if not equals or not key:
            raise KeyStoreError(f"{path}:{number}: expected slug=key")  # the line may be a key: not echoed
        if not SLUG_RE.fullmatch(slug):
            raise KeyStoreError(f"{path}:{number}: '{slug[:64]}' is not a tenant slug")
        if slug in keys:
            raise KeyStoreError(f"{path}:{number}: tenant {slug} appears twice")
        keys[slug] = NotificationKey(key)
    return keys


class FileKeyStore:
    def __init__(self, path: Path, keys: dict[str, NotificationKey], *, check_every_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._keys = keys
        self._check_every_s = check_every_s
        self._clock = clock
        self._checked_at = clock()
        self._signature = self._file_signature()
        self._broken = False

    @classmethod
    def load(cls, path: Path, *, check_every_s: float = 2.0,
             clock: Callable[[], float] = time.monotonic) -> FileKeyStore:
        return cls(path, parse_keys_file(path), check_every_s=check_every_s, clock=clock)

    def __repr__(self) -> str:
        return f"FileKeyStore(path={str(self.path)!r}, tenants={len(self._keys)})"

    async def key_for(self, slug: str) -> NotificationKey | None:
        if self._clock() - self._checked_at >= self._check_every_s:
            self._checked_at = self._clock()
            await asyncio.to_thread(self._reload_if_changed)
        return self._keys.get(slug)

    async def close(self) -> None:
        return None

    def _file_signature(self) -> tuple[int, int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return info.st_ino, info.st_mtime_ns, info.st_size

    def _reload_if_changed(self) -> None:
        signature = self._file_signature()
        if signature == self._signature:
            return
        try:
            keys = parse_keys_file(self.path)
        except KeyStoreError as exc:
            if not self._broken:
                log.error("%s; keeping the %d keys read before", exc, len(self._keys))
            self._broken = True
            return  # the next change is tried again; this one is not retried every check
        finally:
            self._signature = signature
        self._keys, self._broken = keys, False
        log.info("%s: %d notification keys read", self.path, len(keys))


def key_store_from_environment(environ: Mapping[str, str] = os.environ) -> KeyStore | None:
    """The key source the environment names (None: none is configured)."""
    path, url = environ.get(KEYS_FILE_ENV), environ.get(DATABASE_URL_ENV)
    if path and url:
        raise KeyStoreError(f"set {KEYS_FILE_ENV} or {DATABASE_URL_ENV}, not both: the router takes its "
                            "notification keys from one source")
    if path:
        return FileKeyStore.load(Path(path))
    if url:
        return DatabaseKeyStore(url, environ.get(SCHEMA_ENV) or "payments")
    return None

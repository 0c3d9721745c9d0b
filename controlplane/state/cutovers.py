"""Cutover journals: each `dualstack cutover` of a tenant, and every step of it as it happens, so that
Ctrl-C or a crash leaves a record of where it stopped, a re-run continues from there, and
`dualstack cutover status` can show it. The only place `cutovers` and `cutover_journal` SQL lives.

Each write is its own short transaction: a row is in the database before the step it announces
starts, and stays there whatever happens to the process next."""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg.types.json import Jsonb

from controlplane.state.schema import query


class Outcome(enum.StrEnum):
    """How a run of a cutover ended (the `outcome` column; NULL while it runs or after it died)."""

    DONE = "done"
    STOPPED = "stopped"  # a check or a step refused to go on; the same command continues it
    INTERRUPTED = "interrupted"  # Ctrl-C; the same command continues it
    SUPERSEDED = "superseded"  # a cutover of the tenant in the other direction took its place


class StepStatus(enum.StrEnum):
    STARTED = "started"
    DONE = "done"
    SKIPPED = "skipped"  # its effect already held (the routing file declared the target)
    INTERRUPTED = "interrupted"
    FAILED = "failed"


@dataclass(frozen=True)
class CutoverRecord:
    id: int
    tenant: str
    from_backend: str
    to_backend: str
    actor: str
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None  # an Outcome value

    @property
    def continuable(self) -> bool:
        """A later run of the same move continues this one (it did not finish, nothing replaced it)."""
        return self.outcome not in (Outcome.DONE, Outcome.SUPERSEDED)


@dataclass(frozen=True)
class JournalEntry:
    step: str
    status: str  # a StepStatus value
    at: datetime
    detail: dict[str, Any]


_COLUMNS: Final = "id, tenant, from_backend, to_backend, actor, started_at, ended_at, outcome"
_LATEST: Final = f"SELECT {_COLUMNS} FROM {{s}}.cutovers WHERE tenant = %s ORDER BY id DESC LIMIT 1"
_BEGIN: Final = (f"INSERT INTO {{s}}.cutovers (tenant, from_backend, to_backend, actor) VALUES (%s, %s, %s, %s) "
                 f"RETURNING {_COLUMNS}")
_END: Final = "UPDATE {s}.cutovers SET outcome = %s, ended_at = now() WHERE id = %s"
_REOPEN: Final = "UPDATE {s}.cutovers SET outcome = NULL, ended_at = NULL WHERE id = %s"
# pg_try_advisory_lock(int, int): this namespace and the tenant's hashed name (the decider's leader
# lock takes the one-bigint form, a lock space of its own).
_RUN_LOCK_NAMESPACE: Final = 0x6375746F  # "cuto"
_WRITE: Final = "INSERT INTO {s}.cutover_journal (cutover_id, step, status, detail) VALUES (%s, %s, %s, %s)"
_ENTRIES: Final = "SELECT step, status, at, detail FROM {s}.cutover_journal WHERE cutover_id = %s ORDER BY id"


class CutoverStore:
    def __init__(self, database_url: str, schema: str) -> None:
        self.database_url = database_url
        self.schema = schema

    @contextlib.contextmanager
    def exclusive(self, tenant: str) -> Iterator[bool]:
        """True while this process is the only cutover of `tenant` running: a session lock in the state
        database, released when the block ends or the process dies (its connection closes)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                               (_RUN_LOCK_NAMESPACE, tenant)).fetchone()
            acquired = bool(row and row[0])
            try:
                yield acquired
            finally:
                # The state database restarted, or the lock's backend was ended, mid-cutover: the lock died
                # with its connection, and an error here must not replace the cutover's own ending
                # (Ctrl-C, a stop) nor its exit status.
                if acquired and not conn.closed:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_RUN_LOCK_NAMESPACE, tenant))

    def latest(self, tenant: str) -> CutoverRecord | None:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(query(_LATEST, self.schema), (tenant,)).fetchone()
        return CutoverRecord(*row) if row else None

    def begin(self, tenant: str, from_backend: str, to_backend: str, actor: str) -> CutoverRecord:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(query(_BEGIN, self.schema), (tenant, from_backend, to_backend, actor)).fetchone()
        assert row is not None  # INSERT ... RETURNING
        return CutoverRecord(*row)

    def end(self, cutover_id: int, outcome: Outcome) -> None:
        with psycopg.connect(self.database_url) as conn:
            conn.execute(query(_END, self.schema), (str(outcome), cutover_id))

    def reopen(self, cutover_id: int) -> None:
        """A new run continues the cutover: it is running again."""
        with psycopg.connect(self.database_url) as conn:
            conn.execute(query(_REOPEN, self.schema), (cutover_id,))

    def write(self, cutover_id: int, step: str, status: StepStatus, detail: Mapping[str, Any]) -> None:
        with psycopg.connect(self.database_url) as conn:
            conn.execute(query(_WRITE, self.schema), (cutover_id, step, str(status), Jsonb(dict(detail))))

    def entries(self, cutover_id: int) -> list[JournalEntry]:
        """The cutover's journal, oldest first."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(query(_ENTRIES, self.schema), (cutover_id,)).fetchall()
        return [JournalEntry(*row) for row in rows]

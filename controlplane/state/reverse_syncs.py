"""Reverse syncs: per tenant, how far v2's changes are written back into v1's store (migration 0012).
The only place the SQL of `reverse_syncs` lives.

A cutover to v2 begins one (again: a new cutover starts from scratch, with a full first pass),
every pass of `dualstack reverse-sync` records its end (clean or not), and `dualstack cutover
complete` ends it. Each write is its own short transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg

from controlplane.state.schema import query


@dataclass(frozen=True, slots=True)
class ReverseSyncRecord:
    tenant: str
    v1_store: str
    started_at: datetime
    started_by: str
    watermark: datetime | None  # v2's clock: every change v2 committed before it is in v1
    last_pass_at: datetime | None
    lag_s: float | None  # at the last clean pass: its end minus its watermark
    rows_copied: int
    last_attempt_at: datetime | None
    last_error: str | None
    failing_since: datetime | None  # the first failed pass after the last clean one
    failing_side: str | None  # 'v1' or 'v2': the store that pass could not use
    completed_at: datetime | None
    completed_by: str | None

    @property
    def running(self) -> bool:
        return self.completed_at is None

    def lag_at(self, now: datetime) -> float | None:
        """How far behind v2 v1 is now, as far as the record knows (None: no clean pass yet)."""
        return None if self.watermark is None else max(0.0, (now - self.watermark).total_seconds())


_COLUMNS: Final = ("tenant, v1_store, started_at, started_by, watermark, last_pass_at, lag_s, rows_copied, "
                   "last_attempt_at, last_error, failing_since, failing_side, completed_at, completed_by")
SELECT_ALL: Final = f"SELECT {_COLUMNS} FROM {{s}}.reverse_syncs ORDER BY tenant"
_ONE: Final = f"SELECT {_COLUMNS} FROM {{s}}.reverse_syncs WHERE tenant = %s"
_BEGIN: Final = (
    "INSERT INTO {s}.reverse_syncs (tenant, v1_store, started_by) VALUES (%s, %s, %s) "
    "ON CONFLICT (tenant) DO UPDATE SET v1_store = EXCLUDED.v1_store, started_at = now(), "
    "started_by = EXCLUDED.started_by, watermark = NULL, last_pass_at = NULL, lag_s = NULL, rows_copied = 0, "
    "last_attempt_at = NULL, last_error = NULL, failing_since = NULL, failing_side = NULL, completed_at = NULL, "
    "completed_by = NULL "
    f"RETURNING {_COLUMNS}")
# A pass that began before `cutover complete` must not move the record afterwards.
_PASSED: Final = ("UPDATE {s}.reverse_syncs SET watermark = %s, last_pass_at = now(), lag_s = %s, "
                  "rows_copied = rows_copied + %s, last_attempt_at = now(), last_error = NULL, failing_since = NULL, "
                  "failing_side = NULL "
                  "WHERE tenant = %s AND completed_at IS NULL")
_FAILED: Final = ("UPDATE {s}.reverse_syncs SET last_attempt_at = now(), last_error = %s, "
                  "failing_since = coalesce(failing_since, now()), failing_side = coalesce(failing_side, %s) "
                  "WHERE tenant = %s AND completed_at IS NULL")
_COMPLETE: Final = (f"UPDATE {{s}}.reverse_syncs SET completed_at = now(), completed_by = %s "
                    f"WHERE tenant = %s AND completed_at IS NULL RETURNING {_COLUMNS}")
MAX_ERROR_CHARS: Final = 500


def records_from_rows(rows: list[tuple[Any, ...]]) -> dict[str, ReverseSyncRecord]:
    return {str(row[0]): ReverseSyncRecord(*row) for row in rows}


class ReverseSyncStore:
    def __init__(self, database_url: str, schema: str) -> None:
        self.database_url = database_url
        self.schema = schema

    def get(self, tenant: str) -> ReverseSyncRecord | None:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(query(_ONE, self.schema), (tenant,)).fetchone()
        return ReverseSyncRecord(*row) if row else None

    def all(self) -> dict[str, ReverseSyncRecord]:
        with psycopg.connect(self.database_url) as conn:
            return records_from_rows(conn.execute(query(SELECT_ALL, self.schema)).fetchall())

    def clock(self) -> datetime:
        """The state database's now(): what the record's own timestamps are compared with."""
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        return row[0]  # type: ignore[no-any-return]

    def begin(self, tenant: str, v1_store: str, actor: str) -> ReverseSyncRecord:
        """Running from now, from scratch (its first pass copies every order of the tenant)."""
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(query(_BEGIN, self.schema), (tenant, v1_store, actor)).fetchone()
        assert row is not None  # INSERT ... RETURNING
        return ReverseSyncRecord(*row)

    def passed(self, tenant: str, watermark: datetime, lag_s: float, rows_copied: int) -> None:
        with psycopg.connect(self.database_url) as conn:
            conn.execute(query(_PASSED, self.schema), (watermark, lag_s, rows_copied, tenant))

    def failed(self, tenant: str, error: str, side: str) -> None:
        """A pass failed: `side` is the store it could not use ('v1' or 'v2'); the first failure after
        the last clean pass is kept (the way back reads it when v2 is unreachable)."""
        with psycopg.connect(self.database_url) as conn:
            conn.execute(query(_FAILED, self.schema), (error[:MAX_ERROR_CHARS], side, tenant))

    def complete(self, tenant: str, actor: str) -> ReverseSyncRecord | None:
        """Ended now (None: there was no running one)."""
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(query(_COMPLETE, self.schema), (actor, tenant)).fetchone()
        return ReverseSyncRecord(*row) if row else None

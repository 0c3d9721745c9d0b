"""Rollout events: every rollout action, with who took it and why (`dualstack rollout explain` reads
them). The only place `rollout_events` SQL lives; other stores record their events here, in their
own transaction."""

from __future__ import annotations

import enum
import getpass
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, NamedTuple

import psycopg
from psycopg.types.json import Jsonb

from controlplane.state.schema import query


class EventKind(enum.StrEnum):
    """What happened; the values are the `kind` column's, as recorded since the first release."""

    ROLLBACK = "rollback"  # a tenant pinned to v1 (by ops or the decider)
    ACK = "ack"  # its lock acknowledged: the routing file decides again
    RELEASED = "released"  # a lock dropped because the tenant's routing entry changed
    PROMOTE = "promote"  # ops: the phase changes by hand
    HOLD = "hold"
    RESUME = "resume"
    CUTOVER = "cutover"  # a cutover to v1 ended the rollout
    CUTOVER_STARTED = "cutover_started"
    CUTOVER_DONE = "cutover_done"


class Event(NamedTuple):
    at: datetime
    kind: str  # an EventKind value (a row recorded by an older release may carry another)
    actor: str
    detail: dict[str, Any]


_INSERT: Final = "INSERT INTO {s}.rollout_events (tenant, kind, actor, detail) VALUES (%s, %s, %s, %s)"
_RECENT: Final = ("SELECT at, kind, actor, detail FROM {s}.rollout_events WHERE tenant = %s "
                  "ORDER BY at DESC, id DESC LIMIT %s")


def actor() -> str:
    """Who is acting, as events record it: the operating-system user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def record_event(conn: psycopg.Connection[Any], schema: str, tenant: str, kind: EventKind, who: str,
                 detail: Mapping[str, Any]) -> None:
    conn.execute(query(_INSERT, schema), (tenant, str(kind), who, Jsonb(dict(detail))))


def recent_events(conn: psycopg.Connection[Any], schema: str, tenant: str, limit: int) -> list[Event]:
    """The tenant's newest events first."""
    return [Event(*row) for row in conn.execute(query(_RECENT, schema), (tenant, limit)).fetchall()]


class EventStore:
    """Events recorded on their own (the cutover's record of its steps)."""

    def __init__(self, database_url: str, schema: str) -> None:
        self.database_url = database_url
        self.schema = schema

    def record(self, tenant: str, kind: EventKind, who: str, detail: Mapping[str, Any]) -> None:
        with psycopg.connect(self.database_url) as conn:
            record_event(conn, self.schema, tenant, kind, who, detail)

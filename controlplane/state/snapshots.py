"""Counter snapshots for the embedded evidence source (the routers' own /metrics, no Prometheus).
The only place `rollout_snapshots` SQL lives."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import psycopg
from psycopg.types.json import Jsonb

from controlplane.state.schema import query

Snapshot = dict[str, float]

_INSERT: Final = ("INSERT INTO {s}.rollout_snapshots (tenant, taken_at, counters) VALUES (%s, %s, %s) "
                  "ON CONFLICT DO NOTHING")
_SINCE: Final = ("SELECT taken_at, counters FROM {s}.rollout_snapshots WHERE tenant = %s AND taken_at >= %s "
                 "ORDER BY taken_at")
# Before the soak: not needed. Older than the windows (2 h): only the first of the soak is needed.
_PRUNE: Final = ("DELETE FROM {s}.rollout_snapshots WHERE tenant = %s AND (taken_at < %s OR "
                 "(taken_at < %s AND taken_at > %s))")
KEEP_RECENT: Final = timedelta(hours=2)


class SnapshotStore:
    def __init__(self, database_url: str, schema: str) -> None:
        self.database_url = database_url
        self.schema = schema

    def keep(self, tenant: str, taken_at: datetime, counters: Snapshot,
             soak_started_at: datetime) -> list[tuple[datetime, Snapshot]]:
        """Store this snapshot; return the soak's snapshots, oldest first (this one included), and drop
        those no longer needed. Raises psycopg.Error."""
        with psycopg.connect(self.database_url) as conn, conn.transaction():
            conn.execute(query(_INSERT, self.schema), (tenant, taken_at, Jsonb(counters)))
            rows = conn.execute(query(_SINCE, self.schema), (tenant, soak_started_at)).fetchall()
            conn.execute(query(_PRUNE, self.schema), (tenant, soak_started_at, taken_at - KEEP_RECENT, rows[0][0]))
        return [(taken, counters) for taken, counters in rows]

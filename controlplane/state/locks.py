"""Rollback locks: take, acknowledge, list, release stale ones. The only place `rollout_locks` SQL
lives: the control plane runs it here (sync psycopg); the router runs SELECT_LOCKS with its async
connection and maps the rows with `locks_from_rows`.

What a lock means for routing is in controlplane/config/locks.py, shared with the routers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

import psycopg

from controlplane.config.locks import Lock
from controlplane.config.model import RoutingConfig
from controlplane.state.events import EventKind, record_event
from controlplane.state.schema import query

# Every router reads the locks this often and applies them at once (proxy/router/locks.py), so a
# rollback reaches every router within about one poll; the CLI and the README say so.
LOCK_POLL_S: Final = 2.0
_COLUMNS: Final = "tenant, backend, declared_backend, reason, actor, created_at"
SELECT_LOCKS: Final = f"SELECT {_COLUMNS} FROM {{s}}.rollout_locks"
_TAKE: Final = ("INSERT INTO {s}.rollout_locks (tenant, backend, declared_backend, reason, actor) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant) DO UPDATE SET backend = EXCLUDED.backend, "
                "declared_backend = EXCLUDED.declared_backend, reason = EXCLUDED.reason, actor = EXCLUDED.actor, "
                "created_at = now()")
_RELEASE: Final = f"DELETE FROM {{s}}.rollout_locks WHERE tenant = %s RETURNING {_COLUMNS}"


def locks_from_rows(rows: Iterable[Sequence[Any]]) -> dict[str, Lock]:
    return {row[0]: Lock(*row) for row in rows}


class RollbackRefused(Exception):
    """A rollback that would send a tenant to a v1 that does not hold its orders; the message says why."""


class LockStore:
    def __init__(self, database_url: str, schema: str) -> None:
        self.database_url = database_url
        self.schema = schema

    def locks(self) -> dict[str, Lock]:
        with psycopg.connect(self.database_url) as conn:
            return self._locks_in(conn)

    def rollback(self, config: RoutingConfig, tenant: str, reason: str, who: str) -> Lock:
        """Pin `tenant` to v1. Refused (RollbackRefused) when v1 does not hold its orders."""
        spec = config.tenants.get(tenant)
        if spec is None:
            raise KeyError(tenant)
        refusal = config.v1_refusal(tenant)
        if refusal is not None:
            raise RollbackRefused(f"{tenant} cannot be rolled back to v1: {refusal}")
        lock = Lock(tenant, "v1", spec.backend, reason, who)
        with psycopg.connect(self.database_url) as conn, conn.transaction():
            conn.execute(query(_TAKE, self.schema), (tenant, lock.backend, lock.declared_backend, reason, who))
            record_event(conn, self.schema, tenant, EventKind.ROLLBACK, who,
                         {"reason": reason, "declared": spec.backend, "to": "v1"})
        return lock

    def ack(self, tenant: str, who: str) -> Lock | None:
        with psycopg.connect(self.database_url) as conn, conn.transaction():
            row = conn.execute(query(_RELEASE, self.schema), (tenant,)).fetchone()
            if row is not None:
                record_event(conn, self.schema, tenant, EventKind.ACK, who, {"released_lock_reason": row[3]})
        return Lock(*row) if row is not None else None

    def release_stale(self, config: RoutingConfig, who: str) -> list[str]:
        """Drop locks whose tenant entry changed (or disappeared) since they were taken."""
        released = []
        with psycopg.connect(self.database_url) as conn, conn.transaction():
            for tenant, lock in self._locks_in(conn, for_update=True).items():
                spec = config.tenants.get(tenant)
                if spec is None or spec.backend != lock.declared_backend:
                    conn.execute(query(_RELEASE, self.schema), (tenant,))
                    record_event(conn, self.schema, tenant, EventKind.RELEASED, who,
                                 {"why": "the routing entry changed"})
                    released.append(tenant)
        return released

    def _locks_in(self, conn: psycopg.Connection[Any], *, for_update: bool = False) -> dict[str, Lock]:
        text = SELECT_LOCKS + (" FOR UPDATE" if for_update else "")
        return locks_from_rows(conn.execute(query(text, self.schema)).fetchall())

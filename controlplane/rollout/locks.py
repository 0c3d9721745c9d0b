"""Rollback locks in the state database: take, acknowledge, list, release stale ones.

What a lock means for routing is in controlplane/config/locks.py, shared with the routers.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from controlplane.config.locks import Lock
from controlplane.config.model import RoutingConfig


def actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class LockStore:
    def __init__(self, database_url: str, schema: str) -> None:
        self.database_url = database_url
        self.schema = schema

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(s=sql.Identifier(self.schema))

    def locks(self) -> dict[str, Lock]:
        with psycopg.connect(self.database_url) as conn:
            return self._locks_in(conn)

    def _event(self, conn: psycopg.Connection[Any], tenant: str, kind: str, who: str,
               detail: Mapping[str, Any]) -> None:
        conn.execute(self._q("INSERT INTO {s}.rollout_events (tenant, kind, actor, detail) VALUES (%s, %s, %s, %s)"),
                     (tenant, kind, who, Jsonb(dict(detail))))

    def rollback(self, config: RoutingConfig, tenant: str, reason: str, who: str) -> Lock:
        spec = config.tenants.get(tenant)
        if spec is None:
            raise KeyError(tenant)
        lock = Lock(tenant, "v1", spec.backend, reason, who)
        with psycopg.connect(self.database_url) as conn, conn.transaction():
            conn.execute(self._q(
                "INSERT INTO {s}.rollout_locks (tenant, backend, declared_backend, reason, actor) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant) DO UPDATE SET backend = EXCLUDED.backend, "
                "declared_backend = EXCLUDED.declared_backend, reason = EXCLUDED.reason, actor = EXCLUDED.actor, "
                "created_at = now()"), (tenant, lock.backend, lock.declared_backend, reason, who))
            self._event(conn, tenant, "rollback", who, {"reason": reason, "declared": spec.backend, "to": "v1"})
        return lock

    def ack(self, tenant: str, who: str) -> Lock | None:
        with psycopg.connect(self.database_url) as conn, conn.transaction():
            row = conn.execute(self._q("DELETE FROM {s}.rollout_locks WHERE tenant = %s RETURNING tenant, backend, "
                                       "declared_backend, reason, actor, created_at"), (tenant,)).fetchone()
            if row is not None:
                self._event(conn, tenant, "ack", who, {"released_lock_reason": row[3]})
        return Lock(*row) if row is not None else None

    def release_stale(self, config: RoutingConfig, who: str) -> list[str]:
        """Drop locks whose tenant entry changed (or disappeared) since they were taken."""
        released = []
        with psycopg.connect(self.database_url) as conn, conn.transaction():
            for tenant, lock in self._locks_in(conn, for_update=True).items():
                spec = config.tenants.get(tenant)
                if spec is None or spec.backend != lock.declared_backend:
                    conn.execute(self._q("DELETE FROM {s}.rollout_locks WHERE tenant = %s"), (tenant,))
                    self._event(conn, tenant, "released", who, {"why": "the routing entry changed"})
                    released.append(tenant)
        return released

    def _locks_in(self, conn: psycopg.Connection[Any], *, for_update: bool = False) -> dict[str, Lock]:
        rows = conn.execute(self._q("SELECT tenant, backend, declared_backend, reason, actor, created_at "
                                    "FROM {s}.rollout_locks" + (" FOR UPDATE" if for_update else ""))).fetchall()
        return {r[0]: Lock(*r) for r in rows}

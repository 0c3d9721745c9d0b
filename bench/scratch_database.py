"""A database of a benchmark's own: made on DUALSTACK_BENCH_ADMIN_URL (default: the local
PostgreSQL) with roles of its own, migrated to the payments schema (and, with `state=True`, the
state database's schema too), and dropped afterwards.

    from scratch_database import scratch_database  # bench/scratch_database.py, beside the script
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace

import psycopg
from psycopg.conninfo import make_conninfo

from controlplane.db.layout import DatabaseLayout
from controlplane.db.migrate import bundled_migrations, migrate
from controlplane.state.schema import STATE_SCHEMA


@dataclass(frozen=True)
class ScratchDatabase:
    admin_url: str  # the superuser, in this database
    layout: DatabaseLayout

    @property
    def app_url(self) -> str:
        """As v2 connects: the application role."""
        return make_conninfo(self.admin_url, user=self.layout.app_role)

    @property
    def router_url(self) -> str:
        """As the router connects: the role that may only call notification_key(slug)."""
        return make_conninfo(self.admin_url, user=self.layout.router_role)


@contextlib.contextmanager
def scratch_database(*, state: bool = False) -> Iterator[ScratchDatabase]:
    server = os.environ.get("DUALSTACK_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
    suffix = secrets.token_hex(3)
    name = f"dualstack_bench_{suffix}"
    layout = DatabaseLayout(owner_role=f"bench_{suffix}_owner", app_role=f"bench_{suffix}_app",
                            router_role=f"bench_{suffix}_router", control_role=f"bench_{suffix}_control")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        admin_url = make_conninfo(server, dbname=name)
        migrate(admin_url, layout)
        if state:
            migrate(admin_url, replace(layout, schema=STATE_SCHEMA), migrations=bundled_migrations("controlplane.state"))
        yield ScratchDatabase(admin_url, layout)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in (layout.app_role, layout.router_role, layout.control_role, layout.owner_role):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')

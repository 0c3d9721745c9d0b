"""The state database's schema: its default name, and how a store's SQL names its tables.

Each store writes its SQL once, with `{s}` where the schema goes (`{s}.rollout_locks`); `query`
binds it as an identifier, so the same text serves the control plane (sync psycopg) and the
router (async psycopg).
"""

from __future__ import annotations

from typing import Final

from psycopg import sql

STATE_SCHEMA: Final = "dualstack_state"  # default schema of the state database


def query(text: str, schema: str) -> sql.Composed:
    return sql.SQL(text).format(s=sql.Identifier(schema))

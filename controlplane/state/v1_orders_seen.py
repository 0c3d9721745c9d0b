"""Order ids the router saw v1 create or answer for, per tenant: the only place the SQL of
`v1_orders_seen` lives. The router's writer (proxy/router/v1_orders.py, async psycopg) inserts a
bounded sample in batches; the cutover preflight reads the recent ones (sync) and looks them up in
the v1 store it was given (controlplane/cutover/preflight.py).

The router's role may only insert (the first sighting of an id stays: ON CONFLICT DO NOTHING needs
no UPDATE); the control role reads them, and the decider prunes those older than the window.
"""

from __future__ import annotations

import re
from typing import Any, Final

import psycopg

from controlplane.state.schema import query

SEEN_WINDOW_S: Final = 24 * 3600
MAX_CHECKED: Final = 1000  # the newest ids looked up in the store (one query each side, bounded)
# v1's ids are client-supplied ("261225AB12CD"); anything else is not recorded
ORDER_ID_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

# (tenant, order_id, seen: 'created' | 'answered')
# No conflict target: naming one would need SELECT on its columns, which the router's role lacks.
INSERT: Final = "INSERT INTO {s}.v1_orders_seen (tenant, order_id, seen) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
_PRUNE: Final = "DELETE FROM {s}.v1_orders_seen WHERE seen_at < now() - make_interval(secs => %s)"
_RECENT: Final = ("SELECT order_id, seen FROM {s}.v1_orders_seen WHERE tenant = %s "
                  "AND seen_at >= now() - make_interval(secs => %s) ORDER BY seen_at DESC, order_id LIMIT %s")


def recent(conn: psycopg.Connection[Any], schema: str, tenant: str, *, window_s: int = SEEN_WINDOW_S,
           limit: int = MAX_CHECKED) -> dict[str, str]:
    """The ids seen for `tenant` in the last `window_s`, newest first: order id -> 'created' | 'answered'."""
    rows = conn.execute(query(_RECENT, schema), (tenant, window_s, limit)).fetchall()
    return {str(order_id): str(seen) for order_id, seen in rows}


def prune(conn: psycopg.Connection[Any], schema: str, *, keep_s: int = SEEN_WINDOW_S) -> int:
    """Drop the sightings older than `keep_s` (the preflight never looks further back); how many went."""
    return conn.execute(query(_PRUNE, schema), (keep_s,)).rowcount

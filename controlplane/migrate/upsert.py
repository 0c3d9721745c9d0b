"""v1's valid orders into v2 in one statement: staged with COPY, upserted as the application role inside
the tenant's row-level security (the migration cannot touch another tenant).

- A status only moves the way Midtrans notifications may move it (controlplane/order_status.py):
  an order already paid on v2 is never regressed.
- `created_at` and `updated_at` are v1's (monthly quotas and revenue by month depend on the first).
  An order an earlier migration inserted (`origin = 'v1'`) with another `created_at` gets v1's;
  `updated_at` only ever moves forward.
- Migrated orders are marked `origin = 'v1'` and get no outbox rows: v1 sent their order email and
  sends their payment email when it applies the settlement (the router copies notifications to
  both backends), so v2 sends neither (proxy/v2/outbox.py queues a 'skipped' row instead).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Final

import psycopg

from controlplane.evidence import Progress
from controlplane.migrate.rows import V1Order
from controlplane.order_status import sql_may_move
from controlplane.progress import ticking

BATCH_ROWS: Final = 50_000

_MAY_MOVE: Final = sql_may_move("o.payment_status", "EXCLUDED.payment_status")
_NEW_CREATED_AT: Final = "(o.origin = 'v1' AND o.created_at <> EXCLUDED.created_at)"
_UPSERT: Final = f"""
WITH customer AS (
    INSERT INTO customers (tenant_id, email, phone, name)
    SELECT DISTINCT ON (lower(email)) %(tenant)s, lower(email), phone, name FROM migration_stage
    ORDER BY lower(email), order_id
    ON CONFLICT (tenant_id, email) DO UPDATE SET updated_at = customers.updated_at
    RETURNING id, email
), upserted AS (
    INSERT INTO orders AS o (tenant_id, order_id, customer_id, customer_name, email, phone, gross_amount,
                             payment_method, payment_status, origin, created_at, updated_at)
    SELECT %(tenant)s, s.order_id, c.id, s.name, s.email, s.phone, s.amount, s.method, s.status, 'v1',
           s.created_at, s.updated_at
    FROM migration_stage s JOIN customer c ON c.email = lower(s.email)
    ON CONFLICT (tenant_id, order_id) DO UPDATE SET
        payment_status = CASE WHEN {_MAY_MOVE} THEN EXCLUDED.payment_status ELSE o.payment_status END,
        created_at = CASE WHEN {_NEW_CREATED_AT} THEN EXCLUDED.created_at ELSE o.created_at END,
        updated_at = GREATEST(o.updated_at, EXCLUDED.updated_at)
    WHERE {_MAY_MOVE} OR {_NEW_CREATED_AT} OR EXCLUDED.updated_at > o.updated_at
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
"""


def upsert(conn: psycopg.Connection[Any], tenant_id: Any, orders: Sequence[V1Order], withheld: Collection[str],
           progress: Progress | None) -> tuple[int, int]:
    """(inserted, updated), inside the caller's transaction bound to the tenant. An order in `withheld`
    (a claim without evidence) goes in as pending, which is below every status v2 may hold."""
    conn.execute("CREATE TEMPORARY TABLE migration_stage (order_id text, name text, email text, phone text, "
                 "amount bigint, method text, status text, created_at timestamptz, updated_at timestamptz) "
                 "ON COMMIT DROP")
    if progress:
        progress("staging", 0, len(orders))
    for start in range(0, len(orders), BATCH_ROWS):
        with conn.cursor().copy("COPY migration_stage FROM STDIN") as copy:
            for o in orders[start:start + BATCH_ROWS]:
                status = "pending" if o.order_id in withheld else o.status
                copy.write_row((o.order_id, o.name, o.email, o.phone, o.amount, o.method, status, o.created_at,
                                o.updated_at))
        if progress:
            progress("staging", min(start + BATCH_ROWS, len(orders)), len(orders))
    with ticking(progress, "upserting"):  # one statement: the ticker shows it is still running
        result = conn.execute(_UPSERT, {"tenant": tenant_id}).fetchone()
    return (int(result[0]), int(result[1])) if result else (0, 0)

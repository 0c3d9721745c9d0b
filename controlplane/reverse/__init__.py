"""Reverse sync: from the moment a tenant's writes switch to v2, v2's new orders and status changes
are written back into v1's own store, so that v1 holds every order of the tenant at any moment and
the way back (`cutover --to v1`) loses nothing, even with v2 stopped.

- rows.py: a v2 order as v1 stores it (v1's status spelling) and the one precedence rule deciding
  what to do with the row v1 holds (never regressed; a v1 row as final or more final stays);
- v1_stores.py: writing both of v1's generations (SQLite `orders`, PostgreSQL `payment_orders`) in
  short transactions, v1 being the store's other writer;
- run.py: one pass (v2's changes since a watermark) and the verification of both sides;
- follow.py: `dualstack reverse-sync [--follow]`, its record in the state database and its gauges;
- cutover.py: where a cutover meets it (begun after the flip to v2, the `reverse_sync` check before
  the way back, `cutover complete`).
"""

"""`dualstack migrate --from STORE`: v1's orders into v2's PostgreSQL, for one tenant, safely.

- v1's store is read through one interface (stores.py), in either generation: the SQLite `orders`
  file (`sqlite:PATH`) or the PostgreSQL `payment_orders` table (`postgresql://...`); read-only in
  both cases.
- Bad rows (invalid email, blank name or phone, an amount that is not a positive whole number of
  rupiah, an unknown status, an unreadable time, an order id v2 cannot hold) are reported by id and
  not migrated; nothing is dropped or mended silently (rows.py).
- Valid rows are upserted in one statement inside the tenant's row-level security, never regressing
  a status, carrying v1's `created_at` and `updated_at`; re-running changes nothing (upsert.py).
- A money-moving v1 status is carried only on evidence (claims.py); without it the order is
  reported, and kept as v2 holds it (a new one is inserted as pending).
- Verification after every pass, field by field (verify.py). `--dry-run` rolls the pass back.
"""

from controlplane.migrate.report import MigrationProblem, Report, detail_lines
from controlplane.migrate.run import migrate
from controlplane.migrate.stores import PostgresStore, SqliteStore, V1Store, open_sqlite, store_for

__all__ = ["MigrationProblem", "PostgresStore", "Report", "SqliteStore", "V1Store", "detail_lines", "migrate",
           "open_sqlite", "store_for"]

"""The state database has one home: each table's SQL lives in its store, and what the router imports
from it carries no aiohttp."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO

OWNERS = {
    "rollout_events": "events.py", "rollout_locks": "locks.py", "rollouts": "rollouts.py",
    "rollout_decisions": "rollouts.py", "rollout_snapshots": "snapshots.py", "shadow_counts": "shadow_samples.py",
    "shadow_fields": "shadow_samples.py", "shadow_samples": "shadow_samples.py",
    "cutovers": "cutovers.py", "cutover_journal": "cutovers.py",
    "v1_orders_seen": "v1_orders_seen.py",
    "write_holds": "holds.py", "hold_confirmations": "holds.py", "router_workers": "holds.py",
}


def test_each_tables_sql_lives_in_its_store() -> None:
    strays = []
    for path in sorted([*(REPO / "controlplane").rglob("*.py"), *(REPO / "proxy").rglob("*.py")]):
        text = path.read_text()
        for table, owner in OWNERS.items():
            # A statement naming the table: FROM / INTO / UPDATE / JOIN / TABLE, schema-qualified or not.
            if re.search(rf"\b(?:FROM|INTO|UPDATE|JOIN|TABLE)\s+[^\s]*?\b{table}\b", text) and \
                    path != REPO / "controlplane" / "state" / owner:
                strays.append(f"{path.relative_to(REPO)}: {table}")
    assert strays == []


def test_what_the_router_imports_from_the_state_database_is_free_of_aiohttp() -> None:
    script = ("import sys\n"
              "import controlplane.state.locks, controlplane.state.rollouts, controlplane.state.schema\n"
              "import controlplane.state.shadow_samples, controlplane.state.v1_orders_seen\n"
              "import controlplane.state.holds\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'proxy')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.strip() == "[]"

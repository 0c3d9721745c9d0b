"""`dualstack outbox list|retry`: the customer emails v2 sends, for ops to see and to send again."""

from __future__ import annotations

import argparse
from datetime import datetime

from controlplane.commands.options import admin_url, database_layout
from controlplane.errors import ExitStatus


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def cmd_outbox(ns: argparse.Namespace) -> ExitStatus:
    from controlplane.db.outbox import OutboxAdmin

    admin = OutboxAdmin(admin_url(ns), database_layout(ns))
    if ns.outbox_command == "list":
        rows = admin.entries(ns.tenant, ns.status, limit=ns.limit)
        print(f"{'id':>8} {'order':24} {'template':22} {'status':8} {'tries':>5} {'created':19} {'next try/sent':19} "
              "last error")
        for r in rows:
            later = r["sent_at"] if r["status"] == "sent" else (
                r["next_attempt_at"] if r["status"] in ("pending", "sending") else None)
            print(f"{r['id']:>8} {r['order_id']:24} {r['template']:22} {r['status']:8} {r['attempts']:>5} "
                  f"{_when(r['created_at']):19} {_when(later):19} {r['last_error'] or ''}")
        print(f"{len(rows)} email(s)" + (f" (the newest {ns.limit})" if len(rows) == ns.limit else ""))
        return ExitStatus.OK
    retried = admin.retry(ns.tenant, ns.id, all_dead=ns.all_dead)
    for one in retried:
        print(f"outbox row {one.id} ({one.template} for order {one.order_id}) was {one.was}: due now")
    print(f"{len(retried)} email(s) due again; v2 sends them at its next sweep (30 s by default)")
    return ExitStatus.OK

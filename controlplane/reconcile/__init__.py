"""`dualstack reconcile --tenant SLUG`: orders whose payment news never reached v2 (a notification
lost, or not confirmable while Get Status was down), settled on Midtrans' own word.

The settling is v2's: `POST /admin/reconcile/{orderId}` makes v2 ask Get Status and apply the answer
by its own rules and its own apply step (the webhook's), recorded in payment_events as
`reconciled`. The control plane may not import v2, and one rule should live in one place; so this
package only drives it: it lists the candidates, asks for each at a bounded rate, and says what
happened. For a tenant v1 still serves (`--sqlite`) it reports what Midtrans says about v1's
pending orders: v1 is never written.

v2client.py (v2's admin API over urllib), driver.py (the run and its report), metrics.py (a
node_exporter textfile, for the stuck-orders alert).
"""

from controlplane.reconcile.driver import ReconcileReport, reconcile
from controlplane.reconcile.v2client import V2Admin, V2Problem

__all__ = ["ReconcileReport", "V2Admin", "V2Problem", "reconcile"]

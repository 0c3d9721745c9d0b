"""`dualstack cutover SLUG --to v2|v1`: move one tenant, guarded, and say what happened at each step.

To v2: preflight (v2 healthy for the tenant; the tenant present, active, with a key that fits its
environment; v1's orders migrate clean; enough shadow comparisons matched; nginx renders and tests
clean; router workers registered to hold writes), then a bulk sync while writes flow, the write
hold (every router worker holds the tenant's writes, reads flow), the final sync under it (nothing
can race it), the flip in the routing file (comments and formatting kept), the release of the held
writes to v2 in arrival order, every router confirming it serves v2, and the soak of the rollout
decision. The hold lasts at most `cutover.hold_s`; past it the cutover aborts with nothing flipped.

To v2, once the routers serve it: the reverse sync begins (controlplane/reverse/): from then on v2's
orders and status changes are written back into v1's store, so v1 holds every order of the tenant.

To v1 (the way back): v1 healthy, nginx clean, and v1 holding every order v2 took (reverse passes,
then both sides verified; with v2's database unreachable, the reverse sync's record), then the hold,
a last reverse pass under it (nothing can race it), the flip, the release and the routers'
confirmation. Orders v2 took that no pass copied (v2 unreachable) stay readable through the router
(an order the serving backend does not know is read from the other), their notifications still reach
v2 (`webhooks: both`), and the reverse sync's follower copies them once v2 answers again.

A failed check stops the cutover before anything changes, unless that check is overridden with a
reason, which is recorded in the state database with the checks themselves.

Each step is written to the cutover's journal in the state database as it happens; Ctrl-C or a
crash leaves it saying where the cutover stopped, and the same command continues from there.

The package: request.py (what is asked, a Check, the stop), preflight.py (the checks), steps.py
(what the move does after them), hold.py (the write hold), probe.py (asking v1, v2 and the routers
over HTTP), journal.py (the Step enum and the record of each), status.py (`cutover status`),
driver.py (Cutover: the order of it all).
"""

from controlplane.cutover.driver import Cutover
from controlplane.cutover.request import CHECKS, Check, CutoverRequest, CutoverStopped

__all__ = ["CHECKS", "Check", "Cutover", "CutoverRequest", "CutoverStopped"]

"""`python -m proxy.router`: run the router (what `dualstack serve` starts)."""

import signal

# Until the routing file is read, a reload request (SIGHUP) is moot: ignore it instead of dying.
signal.signal(signal.SIGHUP, signal.SIG_IGN)

import os  # noqa: E402
import sys  # noqa: E402

from proxy.router.server import main  # noqa: E402

sys.exit(main(prog=os.environ.get("DUALSTACK_PROG", "python -m proxy.router")))

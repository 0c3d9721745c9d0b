"""`python -m proxy.v2`: run the v2 payment service (what `dualstack v2 serve` starts)."""

import signal

# A SIGHUP (systemctl reload) during start-up must not kill the service.
signal.signal(signal.SIGHUP, signal.SIG_IGN)

import os  # noqa: E402
import sys  # noqa: E402

from proxy.v2.server import main  # noqa: E402

sys.exit(main(prog=os.environ.get("DUALSTACK_PROG", "python -m proxy.v2")))

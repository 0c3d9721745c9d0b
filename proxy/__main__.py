"""`python -m proxy`: run the router (what `dualstack serve` starts)."""

import os
import sys

from proxy.server import main

sys.exit(main(prog=os.environ.get("DUALSTACK_PROG", "python -m proxy")))

"""`python -m proxy.v2`: run the v2 payment service (what `dualstack v2 serve` starts)."""

import os
import sys

from proxy.v2.server import main

sys.exit(main(prog=os.environ.get("DUALSTACK_PROG", "python -m proxy.v2")))

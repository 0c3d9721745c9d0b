"""`python -m controlplane`: the same as the `dualstack` command."""

import sys

from controlplane.cli import main

sys.exit(main())

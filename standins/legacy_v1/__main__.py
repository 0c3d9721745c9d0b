"""`python -m standins.legacy_v1` (what `dualstack legacy-v1` runs)."""

import sys

from standins.legacy_v1.cli import main

sys.exit(main())

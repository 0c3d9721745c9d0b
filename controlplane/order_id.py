"""The one order id every store of orders accepts: the payments orders table's CHECK (migration
0001), which a test holds this pattern to. Pure. v2 refuses a create with any other id and answers a
status read of one 404 without asking the database; the v1 -> v2 migration sets such rows aside.
"""

from __future__ import annotations

import re
from typing import Final

ORDER_ID_RE: Final = re.compile(r"[A-Za-z0-9._~-]{1,50}")  # matched whole (fullmatch)

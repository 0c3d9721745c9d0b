"""Header names both servers speak: what the router marks on a request and v2 reads."""

from __future__ import annotations

from typing import Final

REQUEST_ID: Final = "X-Request-ID"
# Marks a mirrored copy (v2 runs it dry). Only the router sets it: a client's copy is dropped.
SHADOW_HEADER: Final = "X-Dualstack-Shadow"

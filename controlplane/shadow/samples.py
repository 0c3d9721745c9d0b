"""What the shadow store holds, shared by the router (writer) and the reports (reader). Pure."""

from __future__ import annotations

import bisect
from typing import Final

# Upper bounds in milliseconds of the latency histogram buckets (the last bucket is open-ended).
LATENCY_BUCKETS_MS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
SAMPLES_PER_FIELD: Final = 20  # newest redacted examples kept per (tenant, endpoint, path)


def bucket_index(milliseconds: float) -> int:
    return bisect.bisect_left(LATENCY_BUCKETS_MS, milliseconds)


def empty_buckets() -> list[int]:
    return [0] * (len(LATENCY_BUCKETS_MS) + 1)

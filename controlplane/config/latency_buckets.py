"""The routers' latency histogram buckets, in seconds: one fixed list the router exports and the
decider reads (controlplane/rollout/evidence.py), so the decider never has to guess which bounds a
slice's increments left out. Pure: the data plane imports it too."""

from __future__ import annotations

from typing import Final

# Dense where a proxied payment API lives (1 ms to 30 s).
DURATION_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)

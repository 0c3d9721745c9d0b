"""Recent windows of a count check: ten-minute buckets of (v1 events, v1 total, v2 events, v2 total),
kept cumulative so that any recent window is one subtraction, and the window's counts as a value."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Final

BUCKET_S: Final = 600  # the recent windows are summed from ten-minute buckets


@dataclass(frozen=True, slots=True)
class Window:
    """Counts over a recent window, and whether they are enough to say v2 is healthy now."""

    seconds: float
    v1_events: int
    v1_total: int
    v2_events: int
    v2_total: int


class Buckets:
    """Ten-minute sums of (v1 events, v1 total, v2 events, v2 total), kept cumulative: any recent
    window is one subtraction."""

    __slots__ = ("base", "cum", "index")
    KEEP: Final = 24 * 3600 // BUCKET_S

    def __init__(self) -> None:
        self.index: list[int] = []
        self.cum: list[list[float]] = []
        self.base = [0.0, 0.0, 0.0, 0.0]  # the sums before the oldest bucket kept

    def add(self, index: int, x1: int, n1: int, x2: int, n2: int) -> None:
        if self.index and self.index[-1] == index:
            last = self.cum[-1]
            last[0] += x1
            last[1] += n1
            last[2] += x2
            last[3] += n2
            return
        prev = self.cum[-1] if self.cum else self.base
        self.index.append(index)
        self.cum.append([prev[0] + x1, prev[1] + n1, prev[2] + x2, prev[3] + n2])
        if len(self.index) > self.KEEP + 16:
            self.base = self.cum[15]
            del self.index[:16], self.cum[:16]

    def since(self, first: int) -> tuple[int, int, int, int]:
        """The sums over the buckets from index `first` on."""
        if not self.cum:
            return 0, 0, 0, 0
        i = bisect.bisect_left(self.index, first)
        before, last = (self.cum[i - 1] if i else self.base), self.cum[-1]
        return (round(last[0] - before[0]), round(last[1] - before[1]), round(last[2] - before[2]),
                round(last[3] - before[3]))

    def clear(self) -> None:
        self.index, self.cum, self.base = [], [], [0.0, 0.0, 0.0, 0.0]

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "cum": self.cum, "base": self.base}

    def load(self, data: dict[str, Any]) -> None:
        self.index = [int(i) for i in data["index"]]
        self.cum = [[float(v) for v in row] for row in data["cum"]]
        self.base = [float(v) for v in data["base"]]

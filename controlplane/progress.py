"""Progress of a long command: a bar with counts and rate on a terminal, plain log lines otherwise.

Fed (phase, done, total) by the work itself. On a terminal one line is redrawn in place (at most
10 times a second); in a log (systemd's journal, a file, CI) a line is written when a phase ends and
every LOG_EVERY_S while it runs, so nothing fills the log with carriage returns.
"""

from __future__ import annotations

import time
from typing import Final, TextIO

BAR_WIDTH: Final = 30
REDRAW_EVERY_S: Final = 0.1
LOG_EVERY_S: Final = 10.0
MIN_RATE_S: Final = 0.05  # a rate over less time than this says nothing


class ProgressDisplay:
    def __init__(self, stream: TextIO, *, tty: bool | None = None, unit: str = "rows") -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.unit = unit
        self.phase: str | None = None
        self.phase_started = 0.0
        self.last_shown = 0.0
        self.last: tuple[int, int] = (-1, -1)

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if phase != self.phase:
            self._end_phase(now)
            self.phase, self.phase_started, self.last_shown, self.last = phase, now, 0.0, (-1, -1)
        if (done, total) == self.last and self.last_shown:
            return  # nothing new to show
        self.last = (done, total)
        finished = done >= total > 1
        interval = REDRAW_EVERY_S if self.tty else LOG_EVERY_S
        if finished or now - self.last_shown >= interval:
            self.last_shown = now
            self._show(now, final=finished)

    def close(self) -> None:
        self._end_phase(time.monotonic())

    def _end_phase(self, now: float) -> None:
        if self.phase is None:
            return
        total = self.last[1]
        if self.tty:
            self._show(now, final=True)
            self.stream.write("\n")
        elif total <= 1:  # a one-step phase: its end is its only line
            self.stream.write(f"{self.phase}: done in {now - self.phase_started:.1f}s\n")
        self.stream.flush()
        self.phase = None

    def _show(self, now: float, *, final: bool) -> None:
        done, total = self.last
        elapsed = max(now - self.phase_started, 1e-9)
        if total <= 1:
            text = f"{self.phase}... {elapsed:.1f}s"
        else:
            share = min(done / total, 1.0)
            rate = f"{done / elapsed:,.0f} {self.unit}/s" if elapsed >= MIN_RATE_S else f"- {self.unit}/s"
            filled = int(share * BAR_WIDTH)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            text = (f"{self.phase:10} [{bar}] {share:4.0%} {done:,}/{total:,} {self.unit}, {rate}"
                    if self.tty else f"{self.phase}: {done:,}/{total:,} {self.unit} ({share:.0%}), {rate}, "
                                     f"{elapsed:.1f}s")
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
        elif total > 1 or final:
            self.stream.write(text + "\n")
        self.stream.flush()

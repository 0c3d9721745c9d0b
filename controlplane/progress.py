"""Progress of a long command: a bar with counts and rate on a terminal, plain log lines otherwise.

Fed (phase, done, total) by the work itself. On a terminal one line is redrawn in place (at most
10 times a second); in a log (systemd's journal, a file, CI) a line is written when a phase ends and
every LOG_EVERY_S while it runs, so nothing fills the log with carriage returns. A single long step
(one SQL statement) runs inside `ticking`, which shows its time passing: redrawn every TICK_S on a
terminal, a "still running" line every LOG_EVERY_S in a log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final, TextIO

BAR_WIDTH: Final = 30
REDRAW_EVERY_S: Final = 0.1
LOG_EVERY_S: Final = 10.0
MIN_RATE_S: Final = 0.05  # a rate over less time than this says nothing
TICK_S: Final = 2.0


class ProgressDisplay:
    def __init__(self, stream: TextIO, *, tty: bool | None = None, unit: str = "rows",
                 log_every_s: float = LOG_EVERY_S) -> None:
        self.stream = stream
        self.log_every_s = log_every_s
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
        if (done, total) == self.last and self.last_shown and total > 1:
            return  # nothing new to show (in a one-step phase the time passing is what is new)
        self.last = (done, total)
        finished = done >= total > 1
        interval = REDRAW_EVERY_S if self.tty else self.log_every_s
        if finished or now - self.last_shown >= interval:
            self.last_shown = now
            self._show(now, final=finished)

    def close(self, *, interrupted: bool = False) -> None:
        if interrupted and self.phase is not None:
            if self.tty:
                self.stream.write("\n")
            self.stream.write(f"{self.phase}: interrupted after {time.monotonic() - self.phase_started:.1f}s\n")
            self.stream.flush()
            self.phase = None
            return
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
        elif elapsed >= self.log_every_s:  # a one-step phase, in a log: now and then, that it still runs
            self.stream.write(f"{self.phase}: still running after {elapsed:.0f}s\n")
        self.stream.flush()


@contextmanager
def ticking(progress: Callable[[str, int, int], None] | None, phase: str, every_s: float = TICK_S) -> Iterator[None]:
    """Around one long step that reports nothing itself: report `phase` (0 of 1) now and every
    `every_s` from a thread until the step ends (or raises, Ctrl-C included)."""
    if progress is None:
        yield
        return
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(every_s):
            progress(phase, 0, 1)

    progress(phase, 0, 1)
    thread = threading.Thread(target=tick, name=f"progress: {phase}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()

"""The progress display: a redrawn bar on a terminal, whole lines in a log."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

from controlplane.progress import ProgressDisplay, ticking


def _feed(display: ProgressDisplay) -> None:
    for done in range(0, 100_001, 10_000):
        display("reading", done, 100_000)
    display("upserting", 0, 1)
    display("verifying", 0, 1)
    display.close()


def test_a_log_gets_whole_lines_with_counts_and_rate_and_no_carriage_returns() -> None:
    out = io.StringIO()
    _feed(ProgressDisplay(out, tty=False))
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[-3].startswith("reading: 100,000/100,000 rows (100%), ") and "rows/s" in lines[-3]
    assert lines[-2].startswith("upserting: done in ") and lines[-1].startswith("verifying: done in ")


def test_a_terminal_gets_one_line_per_phase_redrawn_in_place() -> None:
    out = io.StringIO()
    _feed(ProgressDisplay(out, tty=True))
    lines = out.getvalue().split("\n")
    assert len(lines) == 4 and lines[-1] == ""  # reading, upserting, verifying, each ended by a newline
    final = lines[0].split("\r\x1b[2K")[-1]
    assert final.startswith("reading    [" + "#" * 30 + "] 100% 100,000/100,000 rows, ")
    assert lines[1].split("\r\x1b[2K")[-1].startswith("upserting... ")


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10  # a bound on a wait, not an assertion on time
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_single_long_step_shows_its_time_passing_on_a_terminal_and_in_a_log() -> None:
    terminal, log = io.StringIO(), io.StringIO()
    with ticking(ProgressDisplay(terminal, tty=True), "upserting", every_s=0.01):
        _wait_for(lambda: terminal.getvalue().count("\r") >= 3)  # redrawn again and again while it runs
    assert terminal.getvalue().count("\r\x1b[2Kupserting... ") >= 3
    display = ProgressDisplay(log, tty=False, log_every_s=0.05)
    with ticking(display, "upserting", every_s=0.01):
        _wait_for(lambda: "still running" in log.getvalue())
    display.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and lines[0].startswith("upserting: still running after ")
    assert lines[-1].startswith("upserting: done in ")

"""The progress display: a redrawn bar on a terminal, whole lines in a log."""

from __future__ import annotations

import io

from controlplane.progress import ProgressDisplay


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

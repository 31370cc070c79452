"""Progress lines: a steady cadence, rate and ETA, a closing line; plain lines off a terminal."""

from __future__ import annotations

import io

import pytest

from lakehouse.progress import Progress, TerminalProgress, duration

pytestmark = pytest.mark.living


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_at_the_cadence_with_rate_and_eta() -> None:
    clock, lines = Clock(), []
    progress = Progress("hashing", 1000, lines.append, unit="objects", every=5, clock=clock)
    for _ in range(10):
        clock.now += 1
        progress.advance(50)
    assert lines == [
        "hashing: 250/1,000 objects (25%), 50 objects/s, ETA 15s",
        "hashing: 500/1,000 objects (50%), 50 objects/s, ETA 10s",
    ]
    progress.close()
    assert lines[-1] == "hashing: 500 objects in 10s"
    progress.close()
    assert len(lines) == 3, "close is idempotent"


def test_unknown_total_and_durations() -> None:
    clock, lines = Clock(), []
    with Progress("parsing", None, lines.append, unit="lines", every=0, clock=clock) as progress:
        clock.now += 4
        progress.advance(2, note="day 2026-10-01")
    assert lines[0] == "parsing: 2 lines, 0.50 lines/s; day 2026-10-01"
    assert lines[-1] == "parsing: 2 lines in 4s"
    assert [duration(s) for s in (0, 59.6, 185, 3720)] == ["0s", "1m00s", "3m05s", "1h02m"]


def test_a_pipe_gets_plain_lines_not_a_bar() -> None:
    stream = io.StringIO()
    with TerminalProgress("exporting", 3, unit="tasks", stream=stream) as progress:
        assert progress.bar is None
        progress.advance(3)
    assert stream.getvalue().splitlines()[-1].startswith("exporting: 3 tasks in ")

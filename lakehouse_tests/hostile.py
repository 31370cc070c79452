"""The hostile inputs the tests tried, and what became of each, printed as a table at the end.

Tests call `record(kind, case, outcome)`; the `pytest_terminal_summary` hook
(imported by conftest.py) prints every recorded row in the test log, so a
reader sees the whole list without reading the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

SHOWN = 70


@dataclass(frozen=True)
class Tried:
    kind: str
    case: str
    outcome: str


TRIED: list[Tried] = []


def record(kind: str, case: str, outcome: str) -> None:
    """One hostile input (`kind`: log line, database row, object key…) and its outcome."""
    TRIED.append(Tried(kind, case, outcome))


def cell(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TRIED:
        return
    rows = [(cell(t.kind), cell(t.case), cell(t.outcome)) for t in TRIED]
    header = ("input", "case", "outcome")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    terminalreporter.section(f"hostile inputs tried: {len(rows)}")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        terminalreporter.write_line(
            " | ".join(value.ljust(width) for value, width in zip(row, widths, strict=True))
        )

"""Progress of long loops at a steady cadence, with rate and ETA.

One home for both audiences: a Dagster step passes `context.log.info` as the sink, a
CLI command gets a `rich` bar on a terminal and plain lines otherwise
(`terminal_progress`). No Dagster here, so pure logic and spawned workers may use it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

Sink = Callable[[str], None]


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`: short enough for a log line."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts work done and reports it to `sink` at most every `every` seconds.

    A line reads `hashing: 12,000/100,000 objects (12%), 2,400 objects/s, ETA 37s`; the
    last one, from `close()` (or leaving the `with` block), gives the total and the time.
    Without a known total there is no percentage and no ETA.
    """

    def __init__(
        self,
        what: str,
        total: int | None,
        sink: Sink,
        *,
        unit: str = "items",
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.total, self.sink, self.unit, self.every = what, total, sink, unit, every
        self.clock = clock
        self.done = 0
        self.started = self.last = clock()
        self.closed = False

    def advance(self, n: int = 1, note: str = "") -> None:
        """Count `n` more; report if `every` seconds passed since the last line."""
        self.done += n
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            self.sink(self.line(now, note))

    def line(self, now: float, note: str = "") -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.what}: {self.done:,}"
        if self.total:
            text += f"/{self.total:,} {self.unit} ({100 * self.done / self.total:.0f}%)"
        else:
            text += f" {self.unit}"
        text += f", {rate:,.0f} {self.unit}/s" if rate >= 10 else f", {rate:,.2f} {self.unit}/s"
        if self.total and rate > 0 and self.done < self.total:
            text += f", ETA {duration((self.total - self.done) / rate)}"
        return f"{text}{'; ' + note if note else ''}"

    def close(self, note: str = "") -> None:
        """The closing line: how many in how long."""
        if self.closed:
            return
        self.closed = True
        elapsed = self.clock() - self.started
        self.sink(
            f"{self.what}: {self.done:,} {self.unit} in {duration(elapsed)}"
            f"{'; ' + note if note else ''}"
        )

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()


class TerminalProgress(Progress):
    """A `rich` progress bar on an interactive stream; plain `Progress` lines elsewhere
    (pipes, CI logs), so a redirected command's output stays readable."""

    def __init__(
        self, what: str, total: int | None, *, unit: str = "items", stream: TextIO | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        super().__init__(what, total, self._print, unit=unit)
        self.bar = None
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            self.bar = Bar(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(what, total=total)

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def advance(self, n: int = 1, note: str = "") -> None:
        if self.bar is None:
            super().advance(n, note)
        else:
            self.done += n
            self.bar.update(self.task, advance=n)

    def close(self, note: str = "") -> None:
        if self.bar is not None and not self.closed:
            self.bar.stop()
        super().close(note)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.bar is not None and kind is not None:
            self.bar.stop()
        super().__exit__(kind, error, trace)


def terminal_progress(what: str, total: int | None, *, unit: str = "items") -> TerminalProgress:
    """The CLI's progress: a bar on a terminal, a line every few seconds otherwise."""
    return TerminalProgress(what, total, unit=unit)

"""What every `lakehouse` command shares: output formats, and errors as one line."""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

FORMATS = ("table", "csv", "json")

Command = Callable[[argparse.Namespace], int]


def add_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format")


def reporting_errors(command: Command) -> Command:
    """Refused or failing queries end as `lakehouse: error: …` and exit status 1."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        import duckdb

        from lakehouse.access.query import QueryError
        from lakehouse.resources.keys import UnsafeKeyError

        try:
            return command(args)
        except (QueryError, UnsafeKeyError, duckdb.Error) as exc:
            print(f"lakehouse: error: {exc}", file=sys.stderr)
            return 1
        except BrokenPipeError:
            # The reader stopped early (`| head`): fine, and Python must not report it at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0

    return run


def write_rows(
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    fmt: str,
    out: TextIO | None = None,
) -> None:
    """Print rows as an aligned table, CSV with a header, or a JSON array of objects."""
    out = out or sys.stdout
    if fmt == "json":
        json.dump([dict(zip(columns, row, strict=True)) for row in rows], out, default=json_value)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else shown(v) for v in row] for row in rows])
    else:
        write_table(columns, rows, out)


def json_value(value: object) -> object:
    """JSON for what DuckDB returns beyond JSON's types: times as ISO 8601, the rest as text."""
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if isoformat else str(value)


def shown(value: object) -> object:
    """A float as people read it: 7 significant digits (a float32 score stored as a double
    prints 0.64, not 0.6399999856948853), and 2 decimals from a million up. JSON output
    keeps every digit."""
    if isinstance(value, list | tuple):
        return [shown(item) for item in value]
    if not isinstance(value, float) or not math.isfinite(value):
        return value
    if abs(value) >= 1e6:
        return round(value, 2)
    return float(f"{value:.7g}")


def write_table(columns: Sequence[str], rows: Sequence[Sequence[object]], out: TextIO) -> None:
    cells = [["NULL" if v is None else str(shown(v)) for v in row] for row in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.write(f"({len(rows)} row{'' if len(rows) == 1 else 's'})\n")

"""Shell commands that read the lake with SQL (`lakehouse sql`, `history`, `diff`)."""

from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

FORMATS = ("table", "csv", "json")

Command = Callable[[argparse.Namespace], int]


def add_query_commands(commands: argparse._SubParsersAction) -> None:
    """Register the query subcommands on the `lakehouse` parser."""
    sql = commands.add_parser("sql", help="run one read-only SQL query over the lake's tables")
    sql.add_argument("query", help='e.g. "SELECT count(*) FROM raw_events"')
    sql.add_argument(
        "--version",
        dest="versions",
        action="append",
        type=table_version,
        default=[],
        metavar="TABLE=V",
        help="read TABLE at Delta version V (repeatable)",
    )
    add_format_option(sql)
    sql.set_defaults(run=reporting_errors(run_sql))

    history = commands.add_parser(
        "history", help="a table's Delta versions: time, operation, Dagster run"
    )
    history.add_argument("table")
    add_format_option(history)
    history.set_defaults(run=reporting_errors(run_history))

    diff = commands.add_parser(
        "diff", help="rows added, removed and changed between two versions of a table"
    )
    diff.add_argument("table")
    diff.add_argument("before", type=int, metavar="V1")
    diff.add_argument("after", type=int, metavar="V2")
    add_format_option(diff)
    diff.set_defaults(run=reporting_errors(run_diff))


def add_format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format")


def table_version(text: str) -> tuple[str, int]:
    """Parse `TABLE=V` (argparse reports the error with the option's name)."""
    table, sep, version = text.partition("=")
    if not sep or not table or not version.isdigit():
        raise argparse.ArgumentTypeError(f"expected TABLE=VERSION, e.g. raw_events=3, got {text!r}")
    return table, int(version)


def reporting_errors(command: Command) -> Command:
    """Refused or failing queries end as `lakehouse: error: …` and exit status 1."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        import duckdb

        from lakehouse.query import QueryError
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


def run_sql(args: argparse.Namespace) -> int:
    from lakehouse.query import connect, run_read_query

    conn = connect(versions=dict(args.versions))
    result = run_read_query(conn, args.query)
    write_rows(result.columns, result.fetchall(), args.format)
    return 0


def run_history(args: argparse.Namespace) -> int:
    from lakehouse.query import HISTORY_COLUMNS, table_history

    commits = table_history(args.table)
    write_rows(HISTORY_COLUMNS, [[c[k] for k in HISTORY_COLUMNS] for c in commits], args.format)
    return 0


def run_diff(args: argparse.Namespace) -> int:
    from lakehouse.query import table_diff

    result = table_diff(args.table, args.before, args.after)
    write_rows(result.columns, result.fetchall(), args.format)
    return 0


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
        writer.writerows([["" if v is None else v for v in row] for row in rows])
    else:
        write_table(columns, rows, out)


def json_value(value: object) -> object:
    """JSON for what DuckDB returns beyond JSON's types: times as ISO 8601, the rest as text."""
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if isoformat else str(value)


def write_table(columns: Sequence[str], rows: Sequence[Sequence[object]], out: TextIO) -> None:
    cells = [["NULL" if v is None else str(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.write(f"({len(rows)} row{'' if len(rows) == 1 else 's'})\n")

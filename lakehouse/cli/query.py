"""Shell commands that read the lake with SQL (`lakehouse sql`, `history`, `diff`)."""

from __future__ import annotations

import argparse

from lakehouse.cli.output import add_format_option, reporting_errors, write_rows


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


def table_version(text: str) -> tuple[str, int]:
    """Parse `TABLE=V` (argparse reports the error with the option's name)."""
    table, sep, version = text.partition("=")
    if not sep or not table or not version.isdigit():
        raise argparse.ArgumentTypeError(f"expected TABLE=VERSION, e.g. raw_events=3, got {text!r}")
    return table, int(version)


def run_sql(args: argparse.Namespace) -> int:
    from lakehouse.access.query import connect, run_read_query

    conn = connect(versions=dict(args.versions))
    result = run_read_query(conn, args.query)
    write_rows(result.columns, result.fetchall(), args.format)
    return 0


def run_history(args: argparse.Namespace) -> int:
    from lakehouse.access.query import HISTORY_COLUMNS, table_history

    commits = table_history(args.table)
    write_rows(HISTORY_COLUMNS, [[c[k] for k in HISTORY_COLUMNS] for c in commits], args.format)
    return 0


def run_diff(args: argparse.Namespace) -> int:
    from lakehouse.access.query import table_diff

    result = table_diff(args.table, args.before, args.after)
    write_rows(result.columns, result.fetchall(), args.format)
    return 0

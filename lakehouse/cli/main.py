"""The `lakehouse` command: the synthetic world, a look at the lake, SQL, labels, releases."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from typing import NoReturn

from lakehouse import settings
from lakehouse.cli.demo import add_demo_commands
from lakehouse.cli.flywheel import add_flywheel_commands
from lakehouse.cli.lake import add_lake_commands
from lakehouse.cli.overview import add_overview_commands
from lakehouse.cli.query import add_query_commands
from lakehouse.errors import ConfigError

# Commands that only read an existing lake: a lake root that is not there is a wrong
# setting, said in one line, not "no tables".
READS_LAKE = frozenset(
    {"tables", "sql", "history", "diff", "show-augmentations", "release", "summary"}
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for add_commands in (
        add_demo_commands,
        add_lake_commands,
        add_query_commands,
        add_flywheel_commands,
        add_overview_commands,
    ):
        add_commands(commands)
    args = parser.parse_args(argv)
    try:
        if args.command in READS_LAKE:
            settings.existing_lake_uri()
        status = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return status
    except ConfigError as exc:
        print(f"lakehouse: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader stopped early (`lakehouse tables | head -2`): not an error of ours, and
        # Python must not report the unflushed rest when it exits.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def run() -> NoReturn:
    """The console script: `main`, then an exit that skips the interpreter's teardown.

    Arrow's and DuckDB's native thread pools can still be winding down when Python
    finalizes, and a C++ thread destroyed then aborts the process ("terminate called
    without an active exception", status 134) after the command did all its work. Every
    output is flushed first; nothing the command wrote depends on teardown.
    """
    status = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError):  # reader gone, stream closed
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    run()

"""The `lakehouse` command: the synthetic world, a look at the lake, SQL, labels, releases."""

from __future__ import annotations

import argparse
import sys

from lakehouse.cli.demo import add_demo_commands
from lakehouse.cli.flywheel import add_flywheel_commands
from lakehouse.cli.lake import add_lake_commands
from lakehouse.cli.query import add_query_commands
from lakehouse.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for add_commands in (
        add_demo_commands,
        add_lake_commands,
        add_query_commands,
        add_flywheel_commands,
    ):
        add_commands(commands)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"lakehouse: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

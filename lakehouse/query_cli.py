"""Shell commands that read the lake with SQL (`lakehouse sql`, `history`, `diff`)."""

from __future__ import annotations

import argparse


def add_query_commands(commands: argparse._SubParsersAction) -> None:
    """Register the query subcommands on the `lakehouse` parser."""

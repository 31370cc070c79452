"""The `lakehouse` command and its subcommands, one module per area."""

from lakehouse.cli.main import main, run

__all__ = ["main", "run"]

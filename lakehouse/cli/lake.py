"""A look at the lake from the shell: `tables`, `log-range`, `show-augmentations`."""

from __future__ import annotations

import argparse
from pathlib import Path

from lakehouse import settings
from lakehouse.errors import ConfigError


def add_lake_commands(commands: argparse._SubParsersAction) -> None:
    """Register the lake's table of contents, the log range and the augmentation grid."""
    tables = commands.add_parser("tables", help="list every lake table")
    tables.set_defaults(run=run_tables)

    days = commands.add_parser(
        "log-range", help="print FIRST...LAST of the daily log files (for --partition-range)"
    )
    days.set_defaults(run=run_log_range)

    grid = commands.add_parser(
        "show-augmentations", help="write a grid of originals and their augmentations (PNG)"
    )
    grid.add_argument("--n", type=int, default=6, help="how many images (rows)")
    grid.add_argument("--out", type=Path, default=Path("augmentations.png"))
    grid.set_defaults(run=run_show_augmentations)


def run_tables(args: argparse.Namespace) -> int:
    from lakehouse.access.catalog import table_entries
    from lakehouse.lake import LakeResource

    entries = table_entries(LakeResource(root=settings.lake_uri()))
    if not entries:
        print(f"no tables under {settings.lake_uri()}")
        return 0
    width = max(len(e.name) for e in entries)
    print(f"{'table':<{width}}  {'layer':<8}  {'version':>7}  {'rows':>9}  uri")
    for e in entries:
        print(f"{e.name:<{width}}  {e.layer:<8}  {e.version:>7}  {e.rows:>9}  {e.uri}")
    return 0


def run_show_augmentations(args: argparse.Namespace) -> int:
    from lakehouse.curated.preview import augmentation_grid, stored_images
    from lakehouse.lake import LakeResource

    lake = LakeResource(root=settings.lake_uri())
    shas, k = stored_images(lake, args.n)
    png = augmentation_grid(lake, shas, k) if shas else None
    if png is None:
        raise ConfigError(
            f"{settings.LAKE_VAR}={settings.lake_uri()!r}: no augmented_tensors yet (run make demo)"
        )
    args.out.write_bytes(png)
    print(f"wrote {args.out} ({args.n} images, originals on the left)")
    return 0


def run_log_range(args: argparse.Namespace) -> int:
    from lakehouse.graph.partitions import log_days
    from lakehouse.resources import ObjectStoreResource
    from lakehouse.sources.contract import LOG_KEY

    valid = set(log_days.get_partition_keys())
    days = sorted(
        match.group(1)
        for info in ObjectStoreResource(uri=settings.sources_uri()).list("logs/")
        if (match := LOG_KEY.match(info.key)) and match.group(1) in valid
    )
    if not days:
        raise ConfigError(
            f"{settings.SOURCES_VAR}={settings.sources_uri()!r}: no logs/YYYY-MM-DD.jsonl "
            f"on or after {settings.LOGS_START_VAR}={settings.logs_start()}"
        )
    print(f"{days[0]}...{days[-1]}")
    return 0

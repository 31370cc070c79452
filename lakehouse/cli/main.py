"""The `lakehouse` command: the synthetic world and a look at the lake."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from lakehouse import settings
from lakehouse.cli.flywheel import add_flywheel_commands
from lakehouse.cli.query import add_query_commands
from lakehouse.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lakehouse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo-data", help="write the synthetic source world")
    demo.add_argument("--photos", type=int, default=400)
    demo.add_argument("--users", type=int, default=40)
    demo.add_argument("--days", type=int, default=30)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--start",
        type=date.fromisoformat,
        default=date(2026, 10, 1),
        help="first log day, YYYY-MM-DD (log partitions begin at $LAKEHOUSE_LOGS_START)",
    )
    demo.add_argument(
        "--logins-per-day",
        type=float,
        default=2.0,
        help="mean logins a user a day: with --users, sets how many log events there are",
    )
    demo.add_argument(
        "--out", help=f"sources directory or s3:// URI (default ${settings.SOURCES_VAR})"
    )
    demo.set_defaults(run=run_demo_data)

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

    add_query_commands(commands)
    add_flywheel_commands(commands)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as exc:
        print(f"lakehouse: error: {exc}", file=sys.stderr)
        return 2


def run_demo_data(args: argparse.Namespace) -> int:
    import tempfile

    from lakehouse.demo.world import generate_world
    from lakehouse.resources import ObjectStoreResource
    from lakehouse.sources.contract import LOG_PREFIX, PHOTO_PREFIX

    out = args.out or settings.sources_uri()
    db_url = (
        settings.metadata_db_url()
        if args.out is None or settings.is_s3(out)
        else f"sqlite:///{Path(out).resolve()}/metadata.db"
    )
    world = dict(
        photos=args.photos,
        users=args.users,
        days=args.days,
        seed=args.seed,
        logins_per_day=args.logins_per_day,
        start=args.start,
    )
    if settings.is_s3(out):
        with tempfile.TemporaryDirectory(prefix="lakehouse-world-") as staging:
            summary = generate_world(Path(staging), db_url, **world)
            changes = ObjectStoreResource(uri=out).mirror(Path(staging), (PHOTO_PREFIX, LOG_PREFIX))
        print(f"synthetic world uploaded to {out} ({changes}): {summary}")
        return 0
    Path(out).mkdir(parents=True, exist_ok=True)
    summary = generate_world(Path(out), db_url, **world)
    print(f"synthetic world written to {out}: {summary}")
    return 0


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
    from lakehouse.curated.preview import augmentation_grid
    from lakehouse.lake import LakeResource

    png = augmentation_grid(LakeResource(root=settings.lake_uri()), args.n)
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


if __name__ == "__main__":
    sys.exit(main())

"""`lakehouse demo-data`: the synthetic source world, written where the sources live."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from lakehouse import settings
from lakehouse.progress import TerminalProgress, terminal_progress


def add_demo_commands(commands: argparse._SubParsersAction) -> None:
    """Register `demo-data` on the `lakehouse` parser."""
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


def photo_progress(photos: int) -> TerminalProgress:
    """A bar over the photos written (on a terminal; plain lines every few seconds else)."""
    return terminal_progress("demo-data: writing photos", photos, unit="photos")


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
        with (
            tempfile.TemporaryDirectory(prefix="lakehouse-world-") as staging,
            photo_progress(args.photos) as bar,
        ):
            summary = generate_world(Path(staging), db_url, **world, progress=bar.advance)
            changes = ObjectStoreResource(uri=out).mirror(Path(staging), (PHOTO_PREFIX, LOG_PREFIX))
        print(f"synthetic world uploaded to {out} ({changes}): {summary}")
        return 0
    Path(out).mkdir(parents=True, exist_ok=True)
    with photo_progress(args.photos) as bar:
        summary = generate_world(Path(out), db_url, **world, progress=bar.advance)
    print(f"synthetic world written to {out}: {summary}")
    return 0

"""Shell commands of the data flywheel: `lakehouse labels …` and `lakehouse release …`."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lakehouse import settings
from lakehouse.cli.output import Command, add_format_option, reporting_errors, write_rows

if TYPE_CHECKING:
    from lakehouse.lake import LakeResource


def add_flywheel_commands(commands: argparse._SubParsersAction) -> None:
    """Register `labels export|import` and `release create|list|diff` on the parser."""
    labels = commands.add_parser("labels", help="send photos to Label Studio, bring labels back")
    label_commands = labels.add_subparsers(dest="labels_command", required=True)
    export = label_commands.add_parser(
        "export", help="the N most uncertain unlabelled photos as Label Studio tasks"
    )
    export.add_argument("--n", type=int, default=50, help="how many tasks")
    export.add_argument("--out", type=Path, default=Path("tasks.json"))
    export.add_argument(
        "--image-prefix",
        help="URL prefix Label Studio reads photos from (default: s3:// URI of the sources, "
        "or local-files URLs relative to the sources directory)",
    )
    export.set_defaults(run=reporting_flywheel_errors(run_labels_export))
    imported = label_commands.add_parser(
        "import", help="a Label Studio JSON export into metadata_db.photo_labels"
    )
    imported.add_argument("export", type=Path, help="the JSON export file")
    imported.set_defaults(run=reporting_flywheel_errors(run_labels_import))

    release = commands.add_parser("release", help="named releases of every table's version")
    release_commands = release.add_subparsers(dest="release_command", required=True)
    create = release_commands.add_parser("create", help="record every table's current version")
    create.add_argument("name")
    create.set_defaults(run=reporting_flywheel_errors(run_release_create))
    listed = release_commands.add_parser("list", help="every release: name, time, tables")
    add_format_option(listed)
    listed.set_defaults(run=reporting_flywheel_errors(run_release_list))
    diff = release_commands.add_parser(
        "diff", help="per table: versions and rows added/removed/changed from A to B"
    )
    diff.add_argument("before", metavar="A")
    diff.add_argument("after", metavar="B")
    add_format_option(diff)
    diff.set_defaults(run=reporting_flywheel_errors(run_release_diff))


def reporting_flywheel_errors(command: Command) -> Command:
    """A bad export, an unknown release or a missing table ends as one error line, status 1."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (LookupError, ValueError, OSError) as exc:
            print(f"lakehouse: error: {exc}", file=sys.stderr)
            return 1

    return reporting_errors(run)


def lake() -> LakeResource:
    """The lake of the environment (imported late: `lakehouse --help` stays fast)."""
    from lakehouse.lake import LakeResource

    return LakeResource(root=settings.lake_uri())


def run_labels_export(args: argparse.Namespace) -> int:
    from lakehouse.labels.transfer import config_path, export_tasks

    written = export_tasks(lake(), settings.sources_uri(), args.n, args.out, args.image_prefix)
    print(f"wrote {written} tasks to {args.out} and the labeling config to {config_path(args.out)}")
    return 0


def run_labels_import(args: argparse.Namespace) -> int:
    from lakehouse.labels.transfer import import_annotations
    from lakehouse.resources import MetadataDbResource

    text = args.export.read_text()
    resolution = import_annotations(MetadataDbResource(url=settings.metadata_db_url()), text)
    ids = ", ".join(str(row["photo_id"]) for row in resolution.labels) or "none"
    print(f"labelled {len(resolution.labels)} photos: {ids}")
    for tie in resolution.ties:
        votes = ", ".join(f"{label}: {n}" for label, n in tie.votes.items())
        print(f"tie, left unlabelled: photo {tie.photo_id} {tie.field} ({votes})")
    return 0


def run_release_create(args: argparse.Namespace) -> int:
    from lakehouse.access.releases import create_release

    release = create_release(lake(), args.name)
    print(f"release {release.name}: {len(release.versions)} tables")
    return 0


def run_release_list(args: argparse.Namespace) -> int:
    from lakehouse.access.releases import list_releases

    rows = [
        [r.name, r.created_at, len(r.versions), r.versions.get("training_set")]
        for r in list_releases(lake())
    ]
    write_rows(("release", "created_at", "tables", "training_set"), rows, args.format)
    return 0


def run_release_diff(args: argparse.Namespace) -> int:
    from lakehouse.access.query import DIFF_COLUMNS, release_diff
    from lakehouse.progress import TerminalProgress, terminal_progress

    bar: list[TerminalProgress] = []

    def compared(table: str, tables: int) -> None:
        if not bar:
            bar.append(terminal_progress("release diff", tables, unit="tables"))
        else:
            bar[0].advance(1)

    rows = release_diff(lake(), args.before, args.after, progress=compared)
    if bar:
        bar[0].advance(1)
        bar[0].close()
    write_rows(DIFF_COLUMNS, [[row[c] for c in DIFF_COLUMNS] for row in rows], args.format)
    return 0

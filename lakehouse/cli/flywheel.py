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
    from lakehouse.labels.studio import Resolution
    from lakehouse.lake import LakeResource


def add_flywheel_commands(commands: argparse._SubParsersAction) -> None:
    """Register `labels export|import|push|pull` and `release create|list|diff` on the parser."""
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
    push = label_commands.add_parser(
        "push",
        help="create or update the Label Studio project and send it the N most uncertain "
        "photos not in it yet (LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY)",
    )
    push.add_argument("--n", type=int, default=50, help="how many tasks")
    push.add_argument(
        "--project", help="project title (default: $LABEL_STUDIO_PROJECT or 'lakehouse photos')"
    )
    push.add_argument(
        "--image-prefix",
        help="URL prefix Label Studio reads photos from "
        "(default: a Local Files storage on the sources directory)",
    )
    push.set_defaults(run=reporting_flywheel_errors(run_labels_push))
    pull = label_commands.add_parser(
        "pull",
        help="export the Label Studio project through its API into metadata_db.photo_labels",
    )
    pull.add_argument(
        "--project", help="project title (default: $LABEL_STUDIO_PROJECT or 'lakehouse photos')"
    )
    pull.set_defaults(run=reporting_flywheel_errors(run_labels_pull))

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
        from lakehouse.labels.studio_api import StudioError

        try:
            return command(args)
        except (LookupError, ValueError, OSError, StudioError) as exc:
            print(f"lakehouse: error: {exc}", file=sys.stderr)
            return 1

    return reporting_errors(run)


def lake() -> LakeResource:
    """The lake of the environment (imported late: `lakehouse --help` stays fast)."""
    from lakehouse.lake import LakeResource

    return LakeResource(root=settings.lake_uri())


def run_labels_export(args: argparse.Namespace) -> int:
    from lakehouse.labels.transfer import config_path, export_tasks
    from lakehouse.progress import terminal_progress

    with terminal_progress("writing tasks", args.n, unit="tasks") as progress:
        written = export_tasks(
            lake(), settings.sources_uri(), args.n, args.out, args.image_prefix, progress.advance
        )
    print(f"wrote {written} tasks to {args.out} and the labeling config to {config_path(args.out)}")
    return 0


def run_labels_import(args: argparse.Namespace) -> int:
    import json

    from lakehouse.labels.transfer import import_annotations
    from lakehouse.progress import terminal_progress
    from lakehouse.resources import MetadataDbResource

    text = args.export.read_text()
    try:
        total = len(json.loads(text))
    except (ValueError, TypeError):
        total = None  # parse_export says what is wrong with it
    database = MetadataDbResource(url=settings.metadata_db_url())
    with terminal_progress("reading the export", total, unit="tasks") as progress:
        resolution = import_annotations(database, text, advance=progress.advance)
    print_resolution(resolution)
    return 0


def run_labels_push(args: argparse.Namespace) -> int:
    from lakehouse.labels.studio_api import StudioClient
    from lakehouse.labels.transfer import push_tasks
    from lakehouse.progress import terminal_progress

    client = StudioClient.from_environment()
    with terminal_progress("preparing tasks", args.n, unit="tasks") as progress:
        pushed = push_tasks(
            lake(),
            settings.sources_uri(),
            client,
            project_title(args),
            args.n,
            args.image_prefix,
            progress.advance,
        )
    print(f"project {pushed.project}, id {pushed.project_id}; photos: {pushed.storage}")
    print(f"sent {pushed.sent} tasks ({pushed.already} already in the project)")
    return 0


def run_labels_pull(args: argparse.Namespace) -> int:
    from lakehouse.labels.studio_api import StudioClient
    from lakehouse.labels.transfer import pull_labels
    from lakehouse.progress import terminal_progress
    from lakehouse.resources import MetadataDbResource

    client = StudioClient.from_environment()
    database = MetadataDbResource(url=settings.metadata_db_url())
    with terminal_progress("reading the export", None, unit="tasks") as progress:
        resolution = pull_labels(database, client, project_title(args), progress.advance)
    print_resolution(resolution)
    return 0


def project_title(args: argparse.Namespace) -> str:
    import os

    from lakehouse.labels.studio_api import DEFAULT_PROJECT, PROJECT_VAR

    return args.project or os.environ.get(PROJECT_VAR) or DEFAULT_PROJECT


def print_resolution(resolution: Resolution) -> None:
    """What an import did: labels written, ties, labels removed, answers ignored."""
    ids = ", ".join(str(row["photo_id"]) for row in resolution.labels) or "none"
    print(f"labelled {len(resolution.labels)} photos: {ids}")
    for tie in resolution.ties:
        votes = ", ".join(f"{label}: {n}" for label, n in tie.votes.items())
        print(f"tie, left unlabelled: photo {tie.photo_id} {tie.field} ({votes})")
    if resolution.removed:
        ids = ", ".join(map(str, resolution.removed))
        print(f"no majority any more, Label Studio label removed: photos {ids}")
    for control, count in resolution.ignored.items():
        print(f"ignored {count} answer(s) of a control we do not read: {control}")


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

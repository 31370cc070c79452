"""Moving labels between the lake and Label Studio: tasks out, annotations in."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

import polars as pl

from lakehouse.labels.logic import QUEUE_ORDER
from lakehouse.labels.studio import (
    Resolution,
    label_config,
    parse_export,
    resolve,
    task,
    task_photo_ids,
)
from lakehouse.labels.studio_api import StudioClient, StudioError, config_difference
from lakehouse.lake import LakeResource
from lakehouse.lake.tables import LABEL_QUEUE
from lakehouse.resources import MetadataDbResource
from lakehouse.settings import is_s3

LOCAL_FILES = "/data/local-files/?d="


def image_reference(sources_uri: str, object_key: str, prefix: str | None = None) -> str:
    """Where Label Studio finds a photo: under `prefix` when given; else the s3:// URI (cloud
    storage) or Label Studio's local-files URL relative to the sources directory."""
    if prefix:
        return f"{prefix.rstrip('/')}/{quote(object_key)}"
    if is_s3(sources_uri):
        return f"{sources_uri.rstrip('/')}/{object_key}"
    return LOCAL_FILES + quote(object_key)


def config_path(tasks_path: Path) -> Path:
    """The labeling config written beside the tasks: tasks.json -> tasks.config.xml."""
    return tasks_path.with_name(f"{tasks_path.stem}.config.xml")


def queue_tasks(
    lake: LakeResource,
    sources_uri: str,
    n: int,
    image_prefix: str | None = None,
    skip: Collection[int] = (),
    advance: Callable[[int], None] | None = None,
) -> list[dict[str, object]]:
    """The `n` most uncertain photos of label_queue (but those in `skip`) as tasks."""
    if n < 1:
        raise ValueError(f"--n must be at least 1, not {n}")
    queue = lake.read(LABEL_QUEUE)
    if queue is None:
        raise LookupError(f"no label_queue under {lake.root}: materialize it first")
    if skip:
        queue = queue.filter(~pl.col("photo_id").is_in(list(skip)))
    top = queue.sort(*QUEUE_ORDER, descending=[True, False]).head(n)
    tasks = []
    for photo in top.iter_rows(named=True):
        reference = image_reference(sources_uri, str(photo["object_key"]), image_prefix)
        tasks.append(task(photo, reference))
        if advance:
            advance(1)
    return tasks


def export_tasks(
    lake: LakeResource,
    sources_uri: str,
    n: int,
    out: Path,
    image_prefix: str | None = None,
    advance: Callable[[int], None] | None = None,
) -> int:
    """Write the `n` most uncertain photos of label_queue as Label Studio tasks, and the
    labeling config beside them; returns how many tasks were written."""
    tasks = queue_tasks(lake, sources_uri, n, image_prefix, advance=advance)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(tasks, indent=2) + "\n")
    config_path(out).write_text(label_config())
    return len(tasks)


def import_annotations(
    metadata_db: MetadataDbResource,
    text: str,
    annotators: Mapping[int, str] | None = None,
    advance: Callable[[int], None] | None = None,
) -> Resolution:
    """Check the whole export, resolve it by majority, then write the labels in one
    transaction: decided photos get their label, the export's other photos lose the label
    an earlier import gave them (exports are cumulative). A malformed export raises before
    anything is written. `annotators` maps Label Studio user ids to e-mails (users API)."""
    photos = metadata_db.read_table("photos")
    photo_ids = photos.select(pl.col("photo_id").cast(pl.Int64, strict=False)).drop_nulls()
    export = parse_export(text, photo_ids["photo_id"].to_list(), annotators or {}, advance)
    resolution = resolve(export.annotations, export.photo_ids)
    removed = metadata_db.write_labels(
        [
            {**row, "labeled_at": row["labeled_at"].isoformat(timespec="seconds")}  # type: ignore[attr-defined]
            for row in resolution.labels
        ],
        unlabel=resolution.unlabelled,
    )
    return replace(resolution, ignored=export.ignored, removed=removed)


@dataclass(frozen=True)
class Pushed:
    """What `labels push` did: the project, what happened to it, the tasks sent."""

    project_id: int
    project: str
    sent: int
    already: int
    storage: str


def push_tasks(
    lake: LakeResource,
    sources_uri: str,
    client: StudioClient,
    title: str,
    n: int,
    image_prefix: str | None = None,
    advance: Callable[[int], None] | None = None,
) -> Pushed:
    """Create the project (or give it our config), connect the photo store as a Local
    Files storage (local sources), and send the `n` most uncertain photos not yet in the
    project as tasks with the classifier's answers as predictions."""
    if n < 1:  # everything we can check is checked before the server is touched
        raise ValueError(f"--n must be at least 1, not {n}")
    if lake.version(LABEL_QUEUE) is None:
        raise LookupError(f"no label_queue under {lake.root}: materialize it first")
    project, state = client.ensure_project(title, label_config())
    project_id = int(project["id"])
    storage = "none (s3:// sources: add an S3 storage for them to the project)"
    if image_prefix:
        storage = f"none (images under {image_prefix})"
    elif not is_s3(sources_uri):
        photos = str((Path(sources_uri) / "photos").resolve())
        storage = f"local files {photos} ({client.connect_local_files(project_id, photos)})"
    present = task_photo_ids(client.export(project_id))
    tasks = queue_tasks(lake, sources_uri, n, image_prefix, present, advance)
    sent = client.import_tasks(project_id, tasks) if tasks else 0
    return Pushed(project_id, f"{title!r} ({state})", sent, len(present), storage)


def pull_labels(
    metadata_db: MetadataDbResource,
    client: StudioClient,
    title: str,
    advance: Callable[[int], None] | None = None,
) -> Resolution:
    """Export the project through the API and import it as `labels import` does, with
    annotators named by e-mail. A project with another config is refused unread."""
    project = client.project(title)
    if project is None:
        raise StudioError(
            f"Label Studio has no project {title!r}: create it with `lakehouse labels push`"
        )
    difference = config_difference(project.get("label_config", ""))
    if difference:
        raise StudioError(
            f"Label Studio project {title!r} (id {project['id']}) has another labeling config "
            f"({difference}): nothing imported"
        )
    text = client.export(int(project["id"]))
    return import_annotations(metadata_db, text, client.users(), advance)

"""Moving labels between the lake and Label Studio: tasks out, annotations in."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import polars as pl

from lakehouse.labels.logic import QUEUE_ORDER
from lakehouse.labels.studio import Resolution, label_config, parse_export, resolve, task
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


def export_tasks(
    lake: LakeResource, sources_uri: str, n: int, out: Path, image_prefix: str | None = None
) -> int:
    """Write the `n` most uncertain photos of label_queue as Label Studio tasks, and the
    labeling config beside them; returns how many tasks were written."""
    if n < 1:
        raise ValueError(f"--n must be at least 1, not {n}")
    queue = lake.read(LABEL_QUEUE)
    if queue is None:
        raise LookupError(f"no label_queue under {lake.root}: materialize it first")
    top = queue.sort(*QUEUE_ORDER, descending=[True, False]).head(n)
    tasks = [
        task(photo, image_reference(sources_uri, str(photo["object_key"]), image_prefix))
        for photo in top.iter_rows(named=True)
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(tasks, indent=2) + "\n")
    config_path(out).write_text(label_config())
    return len(tasks)


def import_annotations(metadata_db: MetadataDbResource, text: str) -> Resolution:
    """Check the whole export, resolve it by majority, then write the labels in one
    transaction. A malformed export raises before anything is written."""
    photos = metadata_db.read_table("photos")
    photo_ids = photos.select(pl.col("photo_id").cast(pl.Int64, strict=False)).drop_nulls()
    resolution = resolve(parse_export(text, photo_ids["photo_id"].to_list()))
    metadata_db.write_labels(
        [
            {**row, "labeled_at": row["labeled_at"].isoformat(timespec="seconds")}  # type: ignore[attr-defined]
            for row in resolution.labels
        ]
    )
    return resolution

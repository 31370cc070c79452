"""Silver: decoded images, versioned augmented tensors, hourly user activity.

All work is row-level incremental on content hashes: an image is decoded once
per sha256, augmented once per (sha256, recipe_version), and classified once
per (sha256, model_version).
"""

import os
from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import polars as pl

from lakehouse.curated.augment import RECIPE, commit_batches
from lakehouse.curated.decode import DEFAULT_PIXEL_LIMIT, DecodeError, decode_image
from lakehouse.curated.logic import hourly_activity
from lakehouse.curated.preview import augmentation_grid
from lakehouse.graph.defaults import layer_defaults
from lakehouse.graph.pictures import earlier_pictures, picture, previous_metadata
from lakehouse.graph.reuse import remember_state, reused_state, step_state
from lakehouse.lake import LakeResource, commit_info_for, incremental, table_metadata
from lakehouse.lake.digests import code_digest, digest_strings, frame_digest, with_row_digest
from lakehouse.lake.ledger import DayBatch, ledger_digests, rebuild_changed_days
from lakehouse.lake.metadata import partition_row_count
from lakehouse.lake.quarantine import active_quarantine, sync_quarantine
from lakehouse.lake.rejections import rejection, rejections_frame
from lakehouse.lake.tables import (
    AUGMENTED_TENSORS,
    IMAGES,
    RAW_EVENTS,
    RAW_OBJECTS,
    USER_ACTIVITY,
)
from lakehouse.progress import Progress
from lakehouse.raw.logs import EVENT_SCHEMA
from lakehouse.resources import ObjectStoreResource
from lakehouse.sources.contract import log_key

CURATED = layer_defaults("curated", "team:ml-data")
IMAGES_SOURCE = "images"
IMAGE_SCHEMA: dict[str, pl.DataType] = {
    "sha256": pl.String(),
    "width": pl.Int64(),
    "height": pl.Int64(),
    "original_mode": pl.String(),
    "media_type": pl.String(),
}


class ImagesConfig(dg.Config):
    pixel_limit: int = DEFAULT_PIXEL_LIMIT


class AugmentConfig(dg.Config):
    k: int = 4
    workers: int = -1
    images_per_batch: int = 32
    images_per_commit: int = 256
    preview_images: int = 6


def current_objects(lake: LakeResource) -> pl.DataFrame:
    """One row per distinct content among current objects: its keys and a reference key."""
    registry = lake.read(RAW_OBJECTS, columns=["key", "sha256", "status"])
    if registry is None:
        return pl.DataFrame(
            schema={"sha256": pl.String, "object_key": pl.String, "keys": pl.List(pl.String)}
        )
    return (
        registry.filter(pl.col("status") == "current")
        .group_by("sha256")
        .agg(object_key=pl.col("key").min(), keys=pl.col("key").sort())
        .sort("sha256")
    )


def decoded_facts(
    sources: ObjectStoreResource, todo: pl.DataFrame, pixel_limit: int
) -> tuple[pl.DataFrame, list[dict[str, object]]]:
    """Facts of newly decoded images, and rejections with the decoder's reason."""
    facts, rejected = [], []
    for sha256, key in todo.select("sha256", "object_key").iter_rows():
        try:
            decoded = decode_image(sources.read(key), pixel_limit)
        except DecodeError as exc:
            rejected.append(rejection(key, str(exc), sha256=sha256))
            continue
        facts.append(
            (sha256, decoded.width, decoded.height, decoded.original_mode, decoded.media_type)
        )
    return pl.DataFrame(facts, schema=IMAGE_SCHEMA, orient="row"), rejected


@dg.asset(
    deps=["raw_objects"],
    code_version="1",
    kinds={"delta", "pillow"},
    description="Every current raw object decoded and validated once per sha256 (upright, "
    "8-bit RGB): size after EXIF orientation, original mode, and the keys holding these bytes. "
    "Undecodable objects are quarantined with the decoder's reason.",
    **CURATED,
)
def images(
    context: dg.AssetExecutionContext,
    config: ImagesConfig,
    sources: ObjectStoreResource,
    lake: LakeResource,
) -> dg.MaterializeResult:
    info, now = commit_info_for(context), datetime.now(UTC)
    code = f"{code_digest(__name__, decode_image.__module__)}:{config.pixel_limit}"
    state = step_state(lake, "images", code, (RAW_OBJECTS, IMAGES), [IMAGES_SOURCE])
    if (reused := reused_state(context, lake, state)) is not None:
        return reused
    current = current_objects(lake)
    known = lake.read_or_empty(IMAGES, {**IMAGE_SCHEMA})
    bad = active_quarantine(lake, IMAGES_SOURCE).join(
        current.select("sha256"), on="sha256", how="semi"
    )
    todo = current.join(known, on="sha256", how="anti").join(bad, on="sha256", how="anti")
    context.log.info(f"{current.height} distinct images; decoding {todo.height} new")
    fresh, rejected = decoded_facts(sources, todo, config.pixel_limit)
    facts = pl.concat([known.select(list(IMAGE_SCHEMA)), fresh])
    rows = with_row_digest(current.join(facts, on="sha256").sort("sha256"))
    changes = lake.sync_snapshot(IMAGES, rows, commit_info=info)
    rejections = rejections_frame(
        IMAGES_SOURCE,
        [*bad.select("key", "line", "sha256", "reason", "detail").to_dicts(), *rejected],
    )
    counts = sync_quarantine(lake, IMAGES_SOURCE, rejections, now=now, commit_info=info)
    context.log.info(f"images: {changes}; quarantine {counts}")
    result = dg.MaterializeResult(
        data_version=dg.DataVersion(frame_digest(rows, ["sha256"], ["sha256", "row_sha256"])),
        metadata={
            **table_metadata(lake, IMAGES, rows.height, todo.height),
            "quarantined": counts["active"],
            "modes": dg.MetadataValue.json(dict(rows["original_mode"].value_counts().iter_rows())),
        },
    )
    return remember_state(context, lake, state, result)


def augment_workers(config: AugmentConfig, images_to_do: int) -> int:
    """Spawned workers pay a start-up cost: only worth it for more than a handful of images."""
    if images_to_do < 2 * config.images_per_batch:
        return 0
    return config.workers if config.workers >= 0 else min(4, os.cpu_count() or 1)


@dg.asset(
    deps=["images"],
    code_version=RECIPE.version,
    kinds={"delta", "pytorch"},
    description=f"k augmentations per image from the `{RECIPE.name}` recipe (crop, flip, "
    "rotation and jitter on the PIL image), seeded by (sha256, aug_index, recipe_version); uint8 "
    "C×H×W bytes with dtype and shape. Index 0 is the plain resize.",
    **CURATED,
)
def augmented_tensors(
    context: dg.AssetExecutionContext,
    config: AugmentConfig,
    sources: ObjectStoreResource,
    lake: LakeResource,
) -> dg.MaterializeResult:
    info = commit_info_for(context)
    modules = code_digest(__name__, commit_batches.__module__, augmentation_grid.__module__)
    code = f"{RECIPE.name}:{RECIPE.version}:{modules}:k={config.k}:{config.preview_images}"
    state = step_state(lake, "augmented_tensors", code, (IMAGES, AUGMENTED_TENSORS))
    if (reused := reused_state(context, lake, state)) is not None:
        return reused
    wanted = (
        lake.read_or_empty(
            IMAGES,
            {"sha256": pl.String(), "object_key": pl.String()},
            columns=["sha256", "object_key"],
        )
        .select("sha256", "object_key")
        .join(
            pl.DataFrame({"aug_index": list(range(config.k))}, schema={"aug_index": pl.Int32}),
            how="cross",
        )
        .with_columns(recipe_version=pl.lit(RECIPE.version))
    )
    work = incremental.plan(lake, AUGMENTED_TENSORS, wanted)
    todo = work.missing.select("sha256", "object_key").unique("sha256").sort("sha256")
    workers = augment_workers(config, todo.height)
    context.log.info(
        f"{wanted.height} rows wanted; computing {todo.height} images x {config.k} "
        f"with {workers} workers; removing {work.stale.height} stale rows"
    )

    def augment(_: pl.DataFrame) -> Iterator[pl.DataFrame]:
        return commit_batches(
            sources.uri,
            list(todo.iter_rows()),
            k=config.k,
            recipe=RECIPE,
            workers=workers,
            images_per_batch=config.images_per_batch,
            images_per_commit=config.images_per_commit,
        )

    computed, before = 0, lake.version(AUGMENTED_TENSORS)
    with Progress("augmented_tensors", todo.height, context.log.info, unit="images") as progress:
        for rows in work.apply(lake, augment, commit_info=info):
            computed += rows.height
            progress.advance(rows.height // config.k)
    # one file per commit: after many, merge them and checkpoint the log for readers
    compacted = lake.compact(
        AUGMENTED_TENSORS, commit_info=info, since=-1 if before is None else before
    )
    if compacted["files_removed"]:
        context.log.info(f"augmented_tensors compacted: {compacted}")
    metadata = {
        **table_metadata(lake, AUGMENTED_TENSORS, wanted.height, computed),
        "recipe": f"{RECIPE.name} v{RECIPE.version}",
        "k": config.k,
        "size": RECIPE.size,
    }
    caption = (
        f"the first {config.preview_images} images by sha256: each row the plain resize "
        f"(left) and its {config.k - 1} augmented views ({RECIPE.name} v{RECIPE.version})"
    )
    # a view's pixels follow from (sha256, aug_index, recipe version): the same first images
    # under the same recipe are the same picture, whatever else the table gained or lost
    shown = wanted["sha256"].unique().sort().head(config.preview_images).to_list()
    grid_of = digest_strings([RECIPE.name, RECIPE.version, str(config.k), *shown])
    earlier = previous_metadata(context)
    if grid_unchanged(earlier, grid_of, caption):
        metadata.update(earlier_pictures(context, {"augmentation_grid": caption}, earlier))
        metadata[GRID_OF] = grid_of
    elif (grid := augmentation_grid(lake, shown, config.k)) is not None:
        metadata.update(picture(context, lake, "augmentation_grid", grid, caption))
        metadata[GRID_OF] = grid_of
    result = dg.MaterializeResult(
        data_version=dg.DataVersion(
            digest_strings([RECIPE.name, frame_digest(wanted, work.key, work.key)])
        ),
        metadata=metadata,
    )
    return remember_state(context, lake, state, result)


GRID_OF = "augmentation_grid/of"  # digest of the recipe, k and the images the grid shows


def grid_unchanged(earlier: dict[str, dg.MetadataValue], grid_of: str, caption: str) -> bool:
    """Whether the previous materialization drew the grid of these very images, recipe and
    k with this caption: then no pixel is read for the picture (a no-op, or a change to
    photos the grid does not show)."""
    drawn = earlier.get("augmentation_grid")
    return (
        getattr(earlier.get(GRID_OF), "value", None) == grid_of
        and "augmentation_grid/run" in earlier
        and drawn is not None
        and f"*{caption}*" in str(drawn.value)
    )


USER_ACTIVITY_VERSION = "1"
ACTIVITY_INPUTS = ["ts", "user_id", "event", "day"]  # of raw_events


@dg.asset(
    deps=["raw_events"],
    code_version=USER_ACTIVITY_VERSION,
    description="Logins, views and likes per user and UTC hour, partitioned by log day like "
    "raw_events. A day is recomputed only when its set of event ids changed.",
    **layer_defaults("curated", "team:ml-data", daily=True, kinds={"delta", "polars"}),
)
def user_activity(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    days = list(context.partition_keys)
    # a day's events are what raw_events parsed from one log file: its ledger names the
    # file's sha256, so an unchanged day is known without reading its events
    parsed = ledger_digests(lake, "raw_events")
    digests = {
        day: digest_strings([USER_ACTIVITY_VERSION, parsed.get(log_key(day), "")]) for day in days
    }

    def activity(chunk: list[str]) -> DayBatch:
        # a few days at a time: all 60 days of 10M events at once held 4.9 GB
        events = lake.read_or_empty(
            RAW_EVENTS,
            {column: EVENT_SCHEMA[column] for column in ACTIVITY_INPUTS},
            filters=[("day", "in", chunk)],
            columns=ACTIVITY_INPUTS,
        )
        rows = hourly_activity(events)
        read = dict(events.group_by("day").len().iter_rows())
        written = dict(rows.group_by("day").len().iter_rows())
        counts = {day: (read.get(day, 0), written.get(day, 0), 0) for day in chunk}
        return DayBatch(rows, counts)

    rebuilt = rebuild_changed_days(
        lake,
        "user_activity",
        USER_ACTIVITY,
        digests,
        activity,
        commit_info=commit_info_for(context),
    )
    context.log.info(f"user_activity: recomputed {len(rebuilt.days)} of {len(days)} days")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest_strings(digests[day] for day in days)),
        metadata={
            **table_metadata(lake, USER_ACTIVITY, lake.row_count(USER_ACTIVITY), rebuilt.rows),
            "days_recomputed": len(rebuilt.days),
            "days_in_run": len(days),
            **partition_row_count(lake, USER_ACTIVITY, days),
        },
    )

"""Silver: decoded images, versioned augmented tensors, classifier outputs per image.

All work is row-level incremental on content hashes: an image is decoded once
per sha256, augmented once per (sha256, recipe_version), and classified once
per (sha256, model_version).
"""

import os
from datetime import UTC, datetime

import dagster as dg
import polars as pl
import torch
from pydantic import Field

from lakehouse.curated.augment import RECIPE, TENSOR_SCHEMA, augmented_batches
from lakehouse.curated.decode import DEFAULT_PIXEL_LIMIT, DecodeError, decode_image
from lakehouse.curated.preview import augmentation_grid, markdown_image
from lakehouse.curated.views import TENSORS_TABLE, VIEWS_PER_BATCH, view_batches, view_pixels
from lakehouse.layers import GPU, layer_defaults
from lakehouse.models.classifier import load_classifier, predict
from lakehouse.raw.quarantine import active_quarantine, rejection, rejections_frame, sync_quarantine
from lakehouse.resources import LakeResource, ObjectStoreResource
from lakehouse.resources.device import DeviceResource
from lakehouse.resources.lake import commit_info_for, table_metadata
from lakehouse.versioning import digest_strings, frame_digest
from lakehouse.vocabulary import CONTENT_CLASSES, STYLES

CURATED = layer_defaults("curated", "team:ml-data")
IMAGES_SOURCE = "images"
IMAGE_SCHEMA: dict[str, pl.DataType] = {
    "sha256": pl.String(),
    "width": pl.Int64(),
    "height": pl.Int64(),
    "original_mode": pl.String(),
    "media_type": pl.String(),
}
CLASSES_SCHEMA: dict[str, pl.DataType] = {
    "sha256": pl.String(),
    "model_version": pl.String(),
    "content_probs": pl.List(pl.Float32()),
    "style_probs": pl.List(pl.Float32()),
    "content_label": pl.String(),
    "style_label": pl.String(),
    "content_score": pl.Float32(),
    "style_score": pl.Float32(),
}


class ImagesConfig(dg.Config):
    pixel_limit: int = DEFAULT_PIXEL_LIMIT


class AugmentConfig(dg.Config):
    k: int = 4
    workers: int = -1
    images_per_batch: int = 64
    preview_images: int = 6


class InferenceConfig(dg.Config):
    batch_size: int = 0
    images_per_batch: int = Field(
        default=VIEWS_PER_BATCH,
        ge=1,
        description="Images read, classified and committed together: bounds the pixels held.",
    )


def current_objects(lake: LakeResource) -> pl.DataFrame:
    """One row per distinct content among current objects: its keys and a reference key."""
    registry = lake.read("raw_objects", columns=["key", "sha256", "status"])
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
    current = current_objects(lake)
    known = lake.read_or_empty("images", {**IMAGE_SCHEMA})
    bad = active_quarantine(lake, IMAGES_SOURCE).join(
        current.select("sha256"), on="sha256", how="semi"
    )
    todo = current.join(known, on="sha256", how="anti").join(bad, on="sha256", how="anti")
    context.log.info(f"{current.height} distinct images; decoding {todo.height} new")
    fresh, rejected = decoded_facts(sources, todo, config.pixel_limit)
    facts = pl.concat([known.select(list(IMAGE_SCHEMA)), fresh])
    rows = current.join(facts, on="sha256").sort("sha256")
    rows = rows.with_columns(
        row_sha256=pl.concat_str(
            [pl.col(c).cast(pl.String) for c in ("object_key", "width", "height", "original_mode")]
            + [pl.col("keys").list.join("\n")],
            separator="|",
        )
    )
    changes = lake.sync_snapshot("images", rows, ["sha256"], commit_info=info)
    rejections = rejections_frame(
        IMAGES_SOURCE,
        [*bad.select("key", "line", "sha256", "reason", "detail").to_dicts(), *rejected],
    )
    counts = sync_quarantine(lake, IMAGES_SOURCE, rejections, now=now, commit_info=info)
    context.log.info(f"images: {changes}; quarantine {counts}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(frame_digest(rows, ["sha256"], ["sha256", "row_sha256"])),
        metadata={
            **table_metadata(lake, "images", rows.height, todo.height),
            "quarantined": counts["active"],
            "modes": dg.MetadataValue.json(dict(rows["original_mode"].value_counts().iter_rows())),
        },
    )


def augment_workers(config: AugmentConfig, images_to_do: int) -> int:
    """Spawned workers pay a start-up cost: only worth it for more than a handful of images."""
    if images_to_do < 2 * config.images_per_batch:
        return 0
    return config.workers if config.workers >= 0 else min(4, os.cpu_count() or 1)


@dg.asset(
    deps=["images"],
    code_version=RECIPE.version,
    kinds={"delta", "pytorch"},
    description=f"k augmentations per image from the `{RECIPE.name}` recipe (torchvision "
    "transforms v2), seeded by (sha256, aug_index, recipe_version); uint8 C×H×W bytes with dtype "
    "and shape. Index 0 is the plain resize.",
    **CURATED,
)
def augmented_tensors(
    context: dg.AssetExecutionContext,
    config: AugmentConfig,
    sources: ObjectStoreResource,
    lake: LakeResource,
) -> dg.MaterializeResult:
    info = commit_info_for(context)
    wanted = (
        lake.read_or_empty(
            "images",
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
    key = ["sha256", "aug_index", "recipe_version"]
    # the keys only: the tensor bytes are most of the table (about 110 kB an image)
    have = lake.read_or_empty(TENSORS_TABLE, {c: TENSOR_SCHEMA[c] for c in key}, columns=key)
    missing = wanted.join(have, on=key, how="anti")
    stale = have.join(wanted.select(key), on=key, how="anti")
    todo = missing.select("sha256", "object_key").unique("sha256").sort("sha256")
    workers = augment_workers(config, todo.height)
    context.log.info(
        f"{wanted.height} rows wanted; computing {todo.height} images x {config.k} "
        f"with {workers} workers; removing {stale.height} stale rows"
    )
    lake.delete_keys(TENSORS_TABLE, stale, commit_info=info)
    computed = 0
    for rows, failed in augmented_batches(
        sources.uri,
        list(todo.iter_rows()),
        k=config.k,
        recipe=RECIPE,
        workers=workers,
        images_per_batch=config.images_per_batch,
    ):
        if failed:
            raise RuntimeError(f"images that decoded before failed now: {failed[:5]}")
        lake.upsert(TENSORS_TABLE, rows, key=key, commit_info=info)
        computed += rows.height
        context.log.info(f"augmented_tensors: {computed} rows written")
    metadata = {
        **table_metadata(lake, TENSORS_TABLE, wanted.height, computed),
        "recipe": f"{RECIPE.name} v{RECIPE.version}",
        "k": config.k,
        "size": RECIPE.size,
    }
    grid = augmentation_grid(lake, config.preview_images)
    if grid is not None:
        metadata["preview"] = dg.MetadataValue.md(
            markdown_image(grid, "originals (left) and their augmentations")
        )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest_strings([RECIPE.name, frame_digest(wanted, key, key)])),
        metadata=metadata,
    )


def current_classifier(lake: LakeResource) -> dict[str, object]:
    models = lake.read("style_content_classifier")
    if models is None or models.filter(pl.col("current")).is_empty():
        raise RuntimeError("no trained style_content_classifier in the lake: materialize it first")
    return models.filter(pl.col("current")).row(0, named=True)


@dg.asset(
    deps=["augmented_tensors", "style_content_classifier"],
    code_version="1",
    kinds={"delta", "pytorch"},
    description="Content and style probabilities of every image under the current classifier, "
    "with argmax labels and model_version. Runs in the `gpu` pool (k8s: nvidia.com/gpu: 1; "
    "Celery queue `gpu`), on CUDA with mixed precision when present, else the CPU.",
    **CURATED,
    **GPU,
)
def photo_classes(
    context: dg.AssetExecutionContext,
    config: InferenceConfig,
    lake: LakeResource,
    device: DeviceResource,
) -> dg.MaterializeResult:
    info = commit_info_for(context)
    model_row = current_classifier(lake)
    model_version = str(model_row["model_version"])
    images_now = lake.read_or_empty("images", {"sha256": pl.String()}, columns=["sha256"])
    have = lake.read_or_empty(
        "photo_classes",
        {c: CLASSES_SCHEMA[c] for c in ("sha256", "model_version")},
        columns=["sha256", "model_version"],
    )
    todo = images_now.join(
        have.filter(pl.col("model_version") == model_version), on="sha256", how="anti"
    )
    stale = have.join(
        images_now.with_columns(model_version=pl.lit(model_version)),
        on=["sha256", "model_version"],
        how="anti",
    )
    target = device.device()
    batch_size = config.batch_size or device.batch_size
    context.log.info(
        f"classifying {todo.height} images with model {model_version} on {target} "
        f"(batch {batch_size}); removing {stale.height} stale rows"
    )
    lake.delete_keys("photo_classes", stale, commit_info=info)
    batches = 0
    if todo.height:
        model = load_classifier(lake.get_object(str(model_row["weights_key"])))
        plain = todo.select("sha256", aug_index=pl.lit(0, pl.Int32))
        for rows in view_batches(lake, plain, config.images_per_batch):
            content, style = predict(
                model,
                view_pixels(rows),
                device=target,
                batch_size=batch_size,
                mixed_precision=device.mixed_precision(),
            )
            lake.upsert(
                "photo_classes",
                class_rows(rows["sha256"].to_list(), model_version, content, style),
                key=["sha256", "model_version"],
                commit_info=info,
            )
            batches += 1
            context.log.info(f"photo_classes: batch {batches}, {rows.height} images classified")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(
            digest_strings([model_version, *images_now["sha256"].sort().to_list()])
        ),
        metadata={
            **table_metadata(lake, "photo_classes", images_now.height, todo.height),
            "model_version": model_version,
            "device": str(target),
            "batches": batches,
            "images_per_batch": config.images_per_batch,
        },
    )


def class_rows(
    shas: list[str], model_version: str, content: torch.Tensor, style: torch.Tensor
) -> pl.DataFrame:
    """One row per image: both probability vectors, their argmax labels and scores."""
    content_score, content_index = content.max(1)
    style_score, style_index = style.max(1)
    return pl.DataFrame(
        {
            "sha256": shas,
            "model_version": [model_version] * len(shas),
            "content_probs": content.numpy(),
            "style_probs": style.numpy(),
            "content_label": [CONTENT_CLASSES[i] for i in content_index.tolist()],
            "style_label": [STYLES[i] for i in style_index.tolist()],
            "content_score": content_score.numpy(),
            "style_score": style_score.numpy(),
        },
        schema=CLASSES_SCHEMA,
    )

"""The style/content classifier: trained on our labelled photos, then run on every image.

Weights are stored content-addressed in the lake; `photo_classes` holds the current
model's outputs per image.
"""

from collections.abc import Iterator
from datetime import UTC, datetime

import dagster as dg
import polars as pl
import torch
from pydantic import Field

from lakehouse.curated.augment import RECIPE
from lakehouse.curated.logic import photo_images
from lakehouse.curated.views import (
    VIEW_KEY,
    VIEWS_PER_BATCH,
    keys_of,
    view_batches,
)
from lakehouse.graph import charts
from lakehouse.graph.defaults import GPU, layer_defaults
from lakehouse.graph.pictures import earlier_pictures, picture
from lakehouse.graph.reuse import remember_state, reused_state, step_state
from lakehouse.lake import LakeResource, commit_info_for, incremental, table_metadata
from lakehouse.lake.digests import (
    code_digest,
    digest_strings,
    frame_digest,
    hash_bucket,
    sha256_hex,
)
from lakehouse.lake.metadata import PREVIEW_ROWS, object_link, preview_markdown
from lakehouse.lake.tables import (
    AUGMENTED_TENSORS,
    IMAGES,
    PHOTO_CLASSES,
    RAW_PHOTO_LABELS,
    RAW_PHOTOS,
    STYLE_CONTENT_CLASSIFIER,
    WEAK_LABELS,
)
from lakehouse.memory import release_freed_memory
from lakehouse.models.classifier import (
    UNKNOWN,
    HeldOut,
    PackedPixels,
    TrainConfig,
    accuracy,
    inference_batch_size,
    load_classifier,
    predict,
    train_classifier,
)
from lakehouse.models.registry import CLASSIFIERS
from lakehouse.progress import Progress
from lakehouse.resources.device import DeviceResource
from lakehouse.resources.errors import PermanentError
from lakehouse.vocabulary import CONTENT_CLASSES, STYLES

CLASSIFIER_CODE_VERSION = "1"
HELD_OUT_SHARE = 5  # one photo in five, chosen by a hash of photo_id
# Fewer gold-labelled photos than this (or none held out) train no model: day 0 of a
# labeling project, when label_queue exists to get the first labels.
MIN_LABELLED_PHOTOS = 10


class ClassifierConfig(dg.Config):
    epochs: int = TrainConfig.epochs
    batch_size: int = TrainConfig.batch_size
    learning_rate: float = TrainConfig.learning_rate
    seed: int = TrainConfig.seed
    max_steps: int = TrainConfig.max_steps
    patience: int = Field(
        default=TrainConfig.patience,
        description="Epochs without a better held-out accuracy before training stops "
        "(the best epoch's weights are kept); 0 trains every epoch.",
    )
    use_weak_labels: bool = Field(
        default=False,
        description="Also train the content head on photos without a gold label whose "
        "weak_labels label is at least weak_label_min_confidence (their style is not known). "
        "Reads the latest weak_labels table: the loop closes across runs, not as a graph "
        "dependency, which would be a cycle through photo_classes.",
    )
    weak_label_min_confidence: float = 0.9


def is_held_out(photo_ids: pl.Series) -> pl.Series:
    """Split by photo, never by view: all augmentations of a photo fall on one side."""
    return (hash_bucket(photo_ids, HELD_OUT_SHARE) == 0).rename("held_out")


def labelled_images(lake: LakeResource) -> pl.DataFrame:
    """photo_id, sha256 and label indices of every labelled photo with a current object."""
    labels = lake.read(RAW_PHOTO_LABELS, columns=["photo_id", "content_label", "style_label"])
    photos = lake.read(RAW_PHOTOS, columns=["photo_id", "object_key"])
    objects = lake.read(IMAGES, columns=["sha256", "keys"])
    if labels is None or photos is None or objects is None:
        raise PermanentError("raw_photo_labels, raw_photos and images must be materialized first")
    return (
        photo_images(labels.join(photos, on="photo_id"), objects)
        .filter(
            pl.col("content_label").is_in(CONTENT_CLASSES) & pl.col("style_label").is_in(STYLES)
        )
        .with_columns(
            content=pl.col("content_label").replace_strict(
                {c: i for i, c in enumerate(CONTENT_CLASSES)}, return_dtype=pl.Int64
            ),
            style=pl.col("style_label").replace_strict(
                {s: i for i, s in enumerate(STYLES)}, return_dtype=pl.Int64
            ),
        )
        .pipe(lambda rows: rows.with_columns(is_held_out(rows["photo_id"])))
        .sort("photo_id")
    )


def weak_labelled_images(
    lake: LakeResource, gold: pl.DataFrame, min_confidence: float
) -> pl.DataFrame:
    """Photos without a gold label whose probabilistic content label is confident enough,
    shaped like `labelled_images` (style UNKNOWN, never held out: scores stay on gold)."""
    weak = lake.read(WEAK_LABELS, columns=["photo_id", "label", "confidence"])
    photos = lake.read(RAW_PHOTOS, columns=["photo_id", "object_key"])
    objects = lake.read(IMAGES, columns=["sha256", "keys"])
    if weak is None or photos is None or objects is None:
        raise PermanentError("use_weak_labels needs weak_labels: materialize it first")
    return (
        weak.filter(
            (pl.col("confidence") >= min_confidence)
            & pl.col("label").is_in(CONTENT_CLASSES)
            & ~pl.col("photo_id").is_in(gold["photo_id"].implode())
        )
        .join(photo_images(photos, objects), on="photo_id")
        .select(
            "photo_id",
            pl.col("label").alias("content_label"),
            pl.lit(None, pl.String).alias("style_label"),
            "object_key",
            "sha256",
            content=pl.col("label").replace_strict(
                {c: i for i, c in enumerate(CONTENT_CLASSES)}, return_dtype=pl.Int64
            ),
            style=pl.lit(UNKNOWN, pl.Int64),
            held_out=pl.lit(False),
        )
        .sort("photo_id")
    )


def training_views(lake: LakeResource, labelled: pl.DataFrame) -> pl.DataFrame:
    """Every view of the training photos, only the plain view of held-out ones: their keys
    and labels, not their pixels (enough to know the inputs)."""
    views = lake.read(
        AUGMENTED_TENSORS, columns=VIEW_KEY, filters=[("recipe_version", "=", RECIPE.version)]
    )
    return (
        labelled.join(views, on="sha256")
        .filter(~pl.col("held_out") | (pl.col("aug_index") == 0))
        .sort("photo_id", "aug_index")
    )


def capped_views(views: pl.DataFrame, cap: int) -> pl.DataFrame:
    """At most `cap` views, in (photo_id, aug_index) order: all of them when there are no
    more, else those first by a hash of (sha256, aug_index), a choice by content that any
    run repeats. Training takes at most max_steps batches, so more views are never seen."""
    if views.height <= cap:
        return views
    text = views.select(
        pl.concat_str([pl.col("sha256"), pl.col("aug_index").cast(pl.String)], separator=":")
    ).to_series()
    return (
        views.with_columns(rank=sha256_hex(text))
        .sort("rank", "photo_id", "aug_index")
        .head(cap)
        .drop("rank")
        .sort("photo_id", "aug_index")
    )


@dg.asset(
    deps=["augmented_tensors", "raw_photo_labels", "images"],
    code_version=CLASSIFIER_CODE_VERSION,
    description="A small CNN with a content head and a style head, trained from scratch on the "
    "labelled photos' augmented tensors with a held-out split by photo. Weights are stored "
    "content-addressed under objects/; held-out accuracy per head is in the metadata.",
    **layer_defaults("models", "team:ml", kinds={"pytorch", "delta"}),
    **GPU,
)
def style_content_classifier(
    context: dg.AssetExecutionContext,
    config: ClassifierConfig,
    lake: LakeResource,
    device: DeviceResource,
) -> dg.MaterializeResult:
    info = commit_info_for(context)
    train_config = TrainConfig(
        config.epochs,
        config.batch_size,
        config.learning_rate,
        config.seed,
        config.max_steps,
        config.patience,
    )
    reads = (RAW_PHOTO_LABELS, RAW_PHOTOS, IMAGES, AUGMENTED_TENSORS, STYLE_CONTENT_CLASSIFIER)
    modules = code_digest(__name__, train_classifier.__module__, view_batches.__module__)
    code = f"{CLASSIFIER_CODE_VERSION}:{modules}:{config.model_dump_json()}"
    state = step_state(
        lake,
        "style_content_classifier",
        code,
        (*reads, WEAK_LABELS) if config.use_weak_labels else reads,
    )
    if (reused := reused_state(context, lake, state)) is not None:
        return reused
    labelled = labelled_images(lake)
    weak = (
        weak_labelled_images(lake, labelled, config.weak_label_min_confidence)
        if config.use_weak_labels
        else labelled.clear()
    )
    labelled = pl.concat([labelled, weak], how="vertical_relaxed")
    # which views train the model decides whether to train: their pixels are read only then
    data = training_views(lake, labelled)
    inputs = digest_strings(
        [
            CLASSIFIER_CODE_VERSION,
            repr(train_config),
            frame_digest(
                data,
                ["photo_id", "aug_index"],
                ["photo_id", "sha256", "aug_index", "content", "style"],
            ),
        ]
    )
    models = CLASSIFIERS.models(lake)
    gold = labelled.filter(pl.col("style") != UNKNOWN)
    if (missing := too_few_labels(gold)) is not None:
        context.log.info(f"no model yet: {missing}")
        no_model = dg.MaterializeResult(
            data_version=dg.DataVersion(f"no-model-{inputs[:16]}"),
            metadata={
                **table_metadata(lake, STYLE_CONTENT_CLASSIFIER, models.height, 0),
                "trained": False,
                "reason": f"no model yet: {missing}",
                "labelled_photos": gold.height,
                "labelled_photos_needed": MIN_LABELLED_PHOTOS,
            },
        )
        return remember_state(context, lake, state, no_model)
    known = CLASSIFIERS.find(models, pl.col("inputs_digest") == inputs)
    if known is not None:
        row = known
        context.log.info(f"inputs unchanged: reusing model {row['model_version']}, no training")
        trained_now = 0
        pictures = earlier_pictures(context, CLASSIFIER_PICTURES)
    else:
        row, charts = train_and_evaluate(context, lake, data, train_config, inputs, device)
        release_freed_memory()  # the training pixels and batches: photo_classes runs next
        trained_now = 1
        pictures = {
            key: value
            for name, png in charts.items()
            for key, value in picture(context, lake, name, png, CLASSIFIER_PICTURES[name]).items()
        }
    CLASSIFIERS.make_current(lake, models, row, commit_info=info)
    result = dg.MaterializeResult(
        data_version=dg.DataVersion(row["weights_sha256"]),
        metadata={
            **table_metadata(
                lake, STYLE_CONTENT_CLASSIFIER, models.height + trained_now, trained_now
            ),
            "model_version": row["model_version"],
            "weights": object_link(lake, lake.object_key(row["weights_sha256"])),
            "weights_key": lake.object_key(row["weights_sha256"]),
            "content_accuracy": round(float(row["content_accuracy"]), 4),
            "style_accuracy": round(float(row["style_accuracy"]), 4),
            "train_photos": row["train_photos"],
            "held_out_photos": row["held_out_photos"],
            "weak_labelled_photos": weak.height,
            **pictures,
        },
    )
    return remember_state(context, lake, state, result)


def too_few_labels(gold: pl.DataFrame) -> str | None:
    """Why these gold-labelled photos (with tensors or not) train no model yet, or None."""
    held_out = int(gold["held_out"].sum())
    if gold.height < MIN_LABELLED_PHOTOS:
        return f"{gold.height} labelled photos, {MIN_LABELLED_PHOTOS} needed"
    if held_out == 0 or held_out == gold.height:
        return (
            f"{gold.height} labelled photos, none {'held out' if not held_out else 'to train on'}"
        )
    return None


def packed_views(lake: LakeResource, *views: pl.DataFrame) -> list[PackedPixels]:
    """Pixels of each frame of `views` (rows of sha256, aug_index; repeats allowed), row i
    at index i, held compressed (a sixth of the memory), all read in one pass over the
    tensor table, batch by batch."""
    placed = pl.concat(
        [
            keys_of(frame).with_row_index("position").with_columns(part=pl.lit(part, pl.Int32))
            for part, frame in enumerate(views)
        ]
    )
    packed = [PackedPixels(frame.height, (3, RECIPE.size, RECIPE.size)) for frame in views]
    for found in view_batches(lake, placed):
        hits = placed.join(found.keys.with_row_index("row"), on=VIEW_KEY)
        for (part,), group in hits.group_by("part"):
            rows = torch.from_numpy(group["row"].to_numpy().astype("int64"))
            packed[int(part)].put(group["position"].to_list(), found.pixels[rows])
    # the decoded row groups are free now, but their pages stay resident unless given back
    release_freed_memory()
    if missing := sum(pixels.missing for pixels in packed):
        raise RuntimeError(f"{missing} of {placed.height} views are not in {AUGMENTED_TENSORS}")
    return packed


def train_and_evaluate(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    data: pl.DataFrame,
    config: TrainConfig,
    inputs: str,
    device: DeviceResource,
) -> tuple[dict[str, object], dict[str, bytes]]:
    """Train on the training photos, score the held-out ones, store the weights; the row
    for the registry and the charts (loss per epoch, held-out confusion per head).

    Pixels held: at most max_steps x batch_size training views and the held-out views,
    compressed, read in one pass over the tensor table; the held-out views scored after
    training are those same pixels, not read again."""
    if data.is_empty():
        raise PermanentError("no labelled photos with augmented tensors to train on")
    every = data.filter(~pl.col("held_out"))
    training = capped_views(every, config.max_steps * config.batch_size)
    held_out = data.filter(pl.col("held_out"))
    train_photos = training["photo_id"].n_unique()
    target = device.device()
    context.log.info(
        f"training on {training.height} of {every.height} views of {train_photos} photos "
        f"on {target}; {held_out.height} held-out photos"
    )
    training_pixels, held_out_pixels = packed_views(lake, training, held_out)
    scored = HeldOut(
        held_out_pixels,
        torch.tensor(held_out["content"].to_list(), dtype=torch.int64),
        torch.tensor(held_out["style"].to_list(), dtype=torch.int64),
    )
    trained = train_classifier(
        training_pixels,
        torch.tensor(training["content"].to_list()),
        torch.tensor(training["style"].to_list()),
        config,
        target,
        held_out=scored,
        log=context.log.info,
    )
    del training_pixels
    release_freed_memory()  # training's pixels and batches, before the held-out scores
    content, style = scored.content, scored.style
    content_probs, style_probs = predict(
        trained.model,
        scored.pixels,
        device=torch.device("cpu"),
        batch_size=inference_batch_size(torch.device("cpu")),
    )
    key = lake.put_object(trained.weights)
    result = {
        "model_version": trained.weights_sha256[:16],
        "weights_key": key,
        "weights_sha256": trained.weights_sha256,
        "inputs_digest": inputs,
        "content_accuracy": accuracy(content_probs, content),
        "style_accuracy": accuracy(style_probs, style),
        "train_photos": train_photos,
        "held_out_photos": held_out.height,
        "recipe_version": RECIPE.version,
        "trained_at": datetime.now(UTC),
        "current": True,
    }
    context.log.info(
        f"held-out accuracy: content {result['content_accuracy']:.3f}, "
        f"style {result['style_accuracy']:.3f}; weights {key}"
    )
    return result, classifier_charts(trained.losses, content_probs, content, style_probs, style)


CLASSIFIER_PICTURES = {
    "loss_curve": "training loss (content + style cross-entropy) per epoch",
    "confusion_content": "held-out views: actual (rows) vs predicted (columns) content",
    "confusion_style": "held-out views: actual (rows) vs predicted (columns) style",
}


def classifier_charts(
    losses: list[float],
    content_probs: torch.Tensor,
    content: torch.Tensor,
    style_probs: torch.Tensor,
    style: torch.Tensor,
) -> dict[str, bytes]:
    """The pictures CLASSIFIER_PICTURES names, as PNG bytes."""
    return {
        "loss_curve": charts.loss_curve(losses),
        "confusion_content": charts.confusion_matrix(
            content.tolist(), content_probs.argmax(1).tolist(), CONTENT_CLASSES, "content"
        ),
        "confusion_style": charts.confusion_matrix(
            style.tolist(), style_probs.argmax(1).tolist(), STYLES, "style"
        ),
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


class InferenceConfig(dg.Config):
    batch_size: int = 0
    images_per_batch: int = Field(
        default=VIEWS_PER_BATCH,
        ge=1,
        description="Images read, classified and committed together: bounds the pixels held.",
    )


def current_classifier(lake: LakeResource) -> dict[str, object] | None:
    """The classifier photo_classes applies: the registry's current one (None before the
    first model is trained)."""
    current = CLASSIFIERS.models(lake).filter(pl.col("current"))
    return current.row(0, named=True) if current.height else None


@dg.asset(
    deps=["augmented_tensors", "style_content_classifier"],
    code_version="1",
    kinds={"delta", "pytorch"},
    description="Content and style probabilities of every image under the current classifier, "
    "with argmax labels and model_version. Runs in the `gpu` pool (k8s: nvidia.com/gpu: 1; "
    "Celery queue `gpu`), on CUDA with mixed precision when present, else the CPU.",
    **layer_defaults("models", "team:ml-data"),
    **GPU,
)
def photo_classes(
    context: dg.AssetExecutionContext,
    config: InferenceConfig,
    lake: LakeResource,
    device: DeviceResource,
) -> dg.MaterializeResult:
    info = commit_info_for(context)
    # the preview shows raw_photos' titles: a retitled photo is shown anew
    reads = (IMAGES, PHOTO_CLASSES, STYLE_CONTENT_CLASSIFIER, RAW_PHOTOS)
    modules = code_digest(__name__, predict.__module__, view_batches.__module__)
    state = step_state(lake, "photo_classes", f"1:{modules}:{config.model_dump_json()}", reads)
    if (reused := reused_state(context, lake, state)) is not None:
        return reused
    model_row = current_classifier(lake)
    if model_row is None:
        # Day 0: no labels, no model. An empty table, so what reads it proceeds without it.
        if lake.version(PHOTO_CLASSES) is None:
            empty = pl.DataFrame(schema=CLASSES_SCHEMA)
            lake.sync_snapshot(PHOTO_CLASSES, empty, commit_info=info, fingerprint="model_version")
        context.log.info("no classifier yet: photo_classes stays empty")
        empty_result = dg.MaterializeResult(
            data_version=dg.DataVersion("no-model"),
            metadata={**table_metadata(lake, PHOTO_CLASSES, 0, 0), "model_version": "none"},
        )
        return remember_state(context, lake, state, empty_result)
    model_version = str(model_row["model_version"])
    images_now = lake.read_or_empty(IMAGES, {"sha256": pl.String()}, columns=["sha256"])
    work = incremental.plan(
        lake, PHOTO_CLASSES, images_now.with_columns(model_version=pl.lit(model_version))
    )
    todo = work.missing
    target = device.device()
    batch_size = config.batch_size or device.batch_size or inference_batch_size(target)
    context.log.info(
        f"classifying {todo.height} images with model {model_version} on {target}, "
        f"{config.images_per_batch} read and committed at a time (inference batches of "
        f"{batch_size}); removing {work.stale.height} stale rows"
    )

    def classify(missing: pl.DataFrame) -> Iterator[pl.DataFrame]:
        model = load_classifier(lake.get_object(str(model_row["weights_key"])))
        plain = missing.select("sha256", aug_index=pl.lit(0, pl.Int32))
        for found in view_batches(lake, plain, config.images_per_batch):
            content, style = predict(
                model,
                found.pixels,
                device=target,
                batch_size=batch_size,
                mixed_precision=device.mixed_precision(),
            )
            yield class_rows(found.keys["sha256"].to_list(), model_version, content, style)

    batches, before = 0, lake.version(PHOTO_CLASSES)
    # a line per committed batch, with rate and ETA (a batch is images_per_batch images)
    with Progress("photo_classes", todo.height, context.log.info, unit="images", every=0) as p:
        for rows in work.apply(lake, classify, commit_info=info):
            batches += 1
            p.advance(rows.height, note=f"batch {batches}")
    # a commit a batch: after many, one file instead of ~100 for every reader of the table
    lake.compact(PHOTO_CLASSES, commit_info=info, since=-1 if before is None else before)
    if batches > 1:  # a step that read many pixels has memory to give back (a full gc costs)
        release_freed_memory()
    result = dg.MaterializeResult(
        data_version=dg.DataVersion(
            digest_strings([model_version, *images_now["sha256"].sort().to_list()])
        ),
        metadata={
            **table_metadata(lake, PHOTO_CLASSES, images_now.height, todo.height),
            "model_version": model_version,
            "device": str(target),
            "batches": batches,
            "images_per_batch": config.images_per_batch,
            "inference_batch_size": batch_size,
            "preview": dg.MetadataValue.md(classes_preview(lake)),
        },
    )
    return remember_state(context, lake, state, result)


def classes_preview(lake: LakeResource) -> str:
    """The first photos by id with their title and the classifier's answers: what people
    look for, where the table itself holds sha256 and probability vectors."""
    photos = lake.read(RAW_PHOTOS, columns=["photo_id", "title", "object_key"])
    objects = lake.read(IMAGES, columns=["sha256", "keys"])
    classes = lake.read(
        PHOTO_CLASSES,
        columns=["sha256", "content_label", "content_score", "style_label", "style_score"],
    )
    if photos is None or objects is None or classes is None:
        return "_no rows_"
    rows = (
        photo_images(photos, objects)
        .join(classes, on="sha256")
        .sort("photo_id")
        .head(PREVIEW_ROWS)
        .select(
            "photo_id",
            "title",
            "content_label",
            pl.col("content_score").round(3),
            "style_label",
            pl.col("style_score").round(3),
        )
    )
    return preview_markdown(rows.to_arrow())


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

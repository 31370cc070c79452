"""The labeling loop: what to label next (active learning) and weak labels for the rest.

Both assets read pinned versions of their inputs, write with `sync_snapshot`
(only changed rows, no commit when nothing changed) and report a DataVersion
from their content.
"""

import dagster as dg
import polars as pl

from lakehouse.curated.logic import photo_images
from lakehouse.graph.defaults import layer_defaults
from lakehouse.graph.reuse import unchanged_result
from lakehouse.labels.label_model import fit_generative, function_stats
from lakehouse.labels.labeling_functions import LABELING_FUNCTIONS
from lakehouse.labels.logic import (
    FIRST_LABELS,
    INPUTS_COLUMN,
    STRATEGIES,
    first_labels_queue,
    functions_digest,
    gold_indices,
    input_digests,
    label_matrix,
    label_matrix_reusing,
    queue_rows,
    stats_rows,
    weak_label_rows,
    with_place_counts,
)
from lakehouse.lake import LakeResource, commit_info_for
from lakehouse.lake.metadata import frame_table
from lakehouse.lake.pinned import pinned_versions, read_pinned, snapshot_result
from lakehouse.lake.tables import (
    IMAGES,
    LABEL_QUEUE,
    PHOTO_CLASSES,
    RAW_PHOTO_LABELS,
    RAW_PHOTOS,
    WEAK_LABEL_STATS,
    WEAK_LABELS,
)
from lakehouse.vocabulary import CONTENT_CLASSES

LABELS = layer_defaults("labels", "team:ml-data", kinds={"delta", "numpy"})
LABEL_INPUTS = ("raw_photos", "raw_photo_labels", "images", "photo_classes")
LABEL_MODELS = ("generative", "majority")
# recorded in each commit with the config that shaped the rows: stored rows stand (and are
# not read) while their inputs' versions and this are unchanged; bump on any change of logic
LABEL_QUEUE_VERSION = "1"
WEAK_LABELS_VERSION = "1"
STATS_TABLE = WEAK_LABEL_STATS


class LabelQueueConfig(dg.Config):
    strategy: str = "margin"


class WeakLabelsConfig(dg.Config):
    label_model: str = "generative"


def photos_with_classes(
    lake: LakeResource, versions: dict[str, int], how: str = "inner"
) -> pl.DataFrame:
    """Accepted photos with their sha256, gold labels (null if none) and classifier outputs
    (`how="left"`: also photos without them, their outputs null).

    photo_classes holds the current model's rows only (older ones are removed).
    """
    photos = photo_images(
        read_pinned(
            lake,
            RAW_PHOTOS,
            versions,
            ["photo_id", "object_key", "title", "location_name", "posted_at"],
        ),
        read_pinned(lake, IMAGES, versions, ["sha256", "keys"]),
    )
    gold = read_pinned(lake, RAW_PHOTO_LABELS, versions, ["photo_id", "content_label"])
    classes = read_pinned(lake, PHOTO_CLASSES, versions)
    return (
        photos.join(gold.rename({"content_label": "gold_label"}), on="photo_id", how="left")
        .join(classes, on="sha256", how=how)  # type: ignore[arg-type]
        .sort("photo_id")
    )


@dg.asset(
    deps=list(LABEL_INPUTS),
    code_version=LABEL_QUEUE_VERSION,
    description="Unlabelled photos with how unsure the classifier is about them (margin or "
    "entropy of photo_classes; the less certain head counts); most uncertain first. "
    "`lakehouse labels export --n N` sends the top N to Label Studio.",
    **LABELS,
)
def label_queue(
    context: dg.AssetExecutionContext, config: LabelQueueConfig, lake: LakeResource
) -> dg.MaterializeResult:
    if config.strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, not {config.strategy!r}")
    versions = pinned_versions(lake, LABEL_INPUTS)
    code = f"{LABEL_QUEUE_VERSION};strategy={config.strategy}"
    if (reused := unchanged_result(context, lake, LABEL_QUEUE, versions, code)) is not None:
        return reused
    unlabelled = photos_with_classes(lake, versions, how="left").filter(
        pl.col("gold_label").is_null()
    )
    classified = unlabelled.filter(pl.col("model_version").is_not_null())
    if classified.is_empty():  # no classifier yet: spread over places, newest first
        rows, strategy = first_labels_queue(unlabelled), FIRST_LABELS
    else:
        rows, strategy = queue_rows(classified, config.strategy), config.strategy
    context.log.info(f"label_queue: {rows.height} unlabelled photos ranked by {strategy}")
    return snapshot_result(
        context, lake, LABEL_QUEUE, rows, versions, {"strategy": strategy}, code_version=code
    )


@dg.asset(
    deps=list(LABEL_INPUTS),
    code_version=WEAK_LABELS_VERSION,
    description="The label matrix (photo × labeling function, null = abstain) with majority "
    "vote and a Dawid–Skene generative model's probabilistic content labels; per-function "
    f"coverage, overlap, conflict and accuracy against gold in `{STATS_TABLE}` and the metadata.",
    **LABELS,
)
def weak_labels(
    context: dg.AssetExecutionContext, config: WeakLabelsConfig, lake: LakeResource
) -> dg.MaterializeResult:
    if config.label_model not in LABEL_MODELS:
        raise ValueError(f"label_model must be one of {LABEL_MODELS}, not {config.label_model!r}")
    versions = pinned_versions(lake, LABEL_INPUTS)
    code = f"{WEAK_LABELS_VERSION};label_model={config.label_model}"
    # the stats are written just before the labels, from the same inputs: they stand too
    if (reused := unchanged_result(context, lake, WEAK_LABELS, versions, code)) is not None:
        return reused
    photos = with_place_counts(photos_with_classes(lake, versions))
    names = list(LABELING_FUNCTIONS)
    # the functions run on the photos whose row (or whose functions' code) changed
    functions = functions_digest(LABELING_FUNCTIONS)
    inputs = None if functions is None else input_digests(photos, functions)
    if inputs is None:
        matrix, applied = label_matrix(photos, LABELING_FUNCTIONS), photos.height
    else:
        earlier = earlier_votes(lake, names)
        matrix, applied = label_matrix_reusing(photos, LABELING_FUNCTIONS, inputs, earlier)
    context.log.info(f"labeling functions applied to {applied} of {photos.height} photos")
    gold = gold_indices(photos)
    model = fit_generative(matrix, len(CONTENT_CLASSES))
    rows = weak_label_rows(photos, names, matrix, model, config.label_model, inputs)
    stats = stats_rows(names, function_stats(matrix, gold), model)
    changes = lake.sync_snapshot(STATS_TABLE, stats, commit_info=commit_info_for(context))
    context.log.info(f"{STATS_TABLE}: {changes}")
    return snapshot_result(
        context,
        lake,
        WEAK_LABELS,
        rows,
        versions,
        {
            "functions": frame_table(stats.drop("row_sha256", strict=False)),
            "label_model": config.label_model,
            "label_model_iterations": model.iterations,
            **gold_accuracies(rows),
            "stats_delta_version": lake.version(STATS_TABLE),
        },
        code_version=code,
    )


def earlier_votes(lake: LakeResource, names: list[str]) -> pl.DataFrame | None:
    """Each photo's stored votes and the digest they came from; None when weak_labels is
    absent or lacks one of those columns (written before the digest was kept)."""
    table = lake.open(WEAK_LABELS)
    wanted = ["photo_id", INPUTS_COLUMN, *names]
    if table is None or not set(wanted) <= {field.name for field in table.schema().fields}:
        return None
    return lake.read(WEAK_LABELS, columns=wanted)


def gold_accuracies(rows: pl.DataFrame) -> dict[str, float | int]:
    """How often majority vote and the label model agree with the gold label where one exists."""
    judged = rows.filter(pl.col("gold_label").is_not_null())
    if judged.is_empty():
        return {"gold_photos": 0}
    return {
        "gold_photos": judged.height,
        "majority_accuracy": float(
            (judged["majority_label"] == judged["gold_label"]).fill_null(False).mean()
        ),
        "label_model_accuracy": float(
            (judged["label"] == judged["gold_label"]).fill_null(False).mean()
        ),
    }

"""Gold: point-in-time photo features, popularity labels, the training set.

Every asset reads its inputs at pinned Delta versions (recorded in its metadata),
computes set-wise in DuckDB/polars, and writes through `sync_snapshot` or
`replace_partitions`, so a rerun on unchanged inputs writes no new table version.
"""

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from dagster_duckdb import DuckDBResource

from lakehouse.features.distributions import label_histogram, split_shift
from lakehouse.features.logic import (
    activity_counts,
    feature_rows,
    label_rows,
    log_end,
    training_rows,
    with_new_classifier_outputs,
)
from lakehouse.graph import charts
from lakehouse.graph.defaults import layer_defaults, nightly_freshness
from lakehouse.graph.pictures import picture
from lakehouse.graph.reuse import unchanged_result
from lakehouse.lake import LakeResource
from lakehouse.lake.ledger import LEDGER_TABLE
from lakehouse.lake.pinned import (
    commit_built_from,
    pinned_versions,
    read_pinned,
    recorded_inputs,
    snapshot_result,
)
from lakehouse.lake.tables import (
    IMAGES,
    PHOTO_CLASSES,
    PHOTO_FEATURES,
    POPULARITY_LABELS,
    RAW_EVENTS,
    RAW_PHOTOS,
    RAW_USERS,
    TRAINING_SET,
)
from lakehouse.memory import release_freed_memory
from lakehouse.raw.logs import EVENT_SCHEMA

KINDS = {"delta", "duckdb", "polars"}
FEATURES = layer_defaults("features", "team:ml-data", kinds=KINDS)
FEATURE_INPUTS = ("raw_photos", "raw_users", "raw_events", "images", "photo_classes")
# what the point-in-time activity columns are computed from (the rest: the classifier's)
ACTIVITY_INPUTS = ("raw_photos", "raw_users", "raw_events")
TRAINING_INPUTS = ("photo_features", "popularity_labels")
# recorded in each commit: stored rows count as current only under the same code
PHOTO_FEATURES_VERSION = "1"
POPULARITY_LABELS_VERSION = "1"
TRAINING_SET_VERSION = "1"


def events_at(
    lake: LakeResource, versions: dict[str, int], kind: str, columns: list[str]
) -> pl.DataFrame:
    """The raw_events rows of one kind at the pinned version, only `columns`: the joins
    count logins and likes, and the whole log with its event names took five times the
    memory of the pairs they need (10.5M events: ~690 MiB read, against ~130 MiB).

    The filter casts `event` to string: the stored column reads as string_view."""
    kind_is = pc.field("event").cast(pa.string()) == kind
    found = lake.read(RAW_EVENTS, columns, version=versions[RAW_EVENTS], where=kind_is)
    if found is None:
        return pl.DataFrame(schema={name: EVENT_SCHEMA[name] for name in columns})
    return found


def activity_unchanged(commit: dict[str, object], versions: dict[str, int]) -> int | None:
    """The photo_features version (its latest `commit`) whose rows this code computed from
    these very versions of raw_photos, raw_users and raw_events (their activity columns
    stand), else None."""
    built = recorded_inputs(commit, PHOTO_FEATURES_VERSION)
    if built is None or any(built.get(name) != versions[name] for name in ACTIVITY_INPUTS):
        return None
    return int(commit["version"])  # type: ignore[call-overload]


@dg.asset(
    deps=[*FEATURE_INPUTS, "activity_log_days"],
    code_version=PHOTO_FEATURES_VERSION,
    description="One row per accepted photo: posting time, title, place, the author's logins "
    "in [posted_at - 24 h, posted_at), likes the author's photos received in [posted_at - 7 d, "
    "posted_at), account age, and the classifier's content/style probabilities. Point-in-time "
    "correct: nothing at or after posted_at contributes.",
    **FEATURES,
)
def photo_features(
    context: dg.AssetExecutionContext, lake: LakeResource, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    versions = pinned_versions(lake, FEATURE_INPUTS)
    reused = unchanged_result(context, lake, PHOTO_FEATURES, versions, PHOTO_FEATURES_VERSION)
    if reused is not None:
        return reused
    commit = lake.commit_metadata(PHOTO_FEATURES)
    if commit_built_from(commit, versions, PHOTO_FEATURES_VERSION):
        # the same inputs and code as the stored rows, written before commits recorded
        # their data version: the point-in-time joins over every event would give them again
        rows = lake.read(PHOTO_FEATURES)
        context.log.info("photo_features: inputs unchanged since the stored rows, not recomputed")
    elif (stored := activity_unchanged(commit, versions)) is not None:
        # one photo's new bytes change images and photo_classes only: the point-in-time
        # joins over every event would give the stored activity columns again
        context.log.info(
            f"photo_features: photos, users and events unchanged since version {stored}: "
            "activity kept, classifier outputs joined again"
        )
        with duckdb.get_connection() as conn:
            rows = with_new_classifier_outputs(
                conn,
                lake.read(PHOTO_FEATURES, version=stored),  # type: ignore[arg-type]
                read_pinned(lake, RAW_PHOTOS, versions, ["photo_id", "object_key"]),
                read_pinned(lake, IMAGES, versions, ["sha256", "keys"]),
                read_pinned(lake, PHOTO_CLASSES, versions),
            )
    else:
        # every login and like is read next: start on what the steps before left free
        # but resident (this step held the full run's peak at 100k photos)
        release_freed_memory()
        photos = read_pinned(lake, RAW_PHOTOS, versions)
        activity = activity_counts(
            photos,
            events_at(lake, versions, "login", ["user_id", "ts"]),
            events_at(lake, versions, "like", ["photo_id", "ts"]),
        )
        with duckdb.get_connection() as conn:
            rows = feature_rows(
                conn,
                photos,
                read_pinned(lake, RAW_USERS, versions, ["user_id", "created_at"]),
                activity,
                read_pinned(lake, IMAGES, versions, ["sha256", "keys"]),
                read_pinned(lake, PHOTO_CLASSES, versions),
            )
    missing = rows.filter(pl.col("classifier_version").is_null()).height
    return snapshot_result(
        context,
        lake,
        PHOTO_FEATURES,
        rows,
        versions,
        {"photos_without_classes": missing},
        code_version=PHOTO_FEATURES_VERSION,
    )


@dg.asset(
    deps=["raw_photos", "raw_events", "activity_log_days"],
    code_version=POPULARITY_LABELS_VERSION,
    description="Likes per photo in [posted_at, posted_at + 7 d). A window reaching past the "
    "end of the last complete log day is kept with complete=false (never counted as zero).",
    **FEATURES,
)
def popularity_labels(
    context: dg.AssetExecutionContext, lake: LakeResource, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    versions = pinned_versions(lake, (RAW_PHOTOS, RAW_EVENTS))
    end = log_end(lake.read(LEDGER_TABLE, filters=[("asset", "=", "raw_events")]))
    # the rows depend on the end of the log as well as on the inputs' rows
    code = f"{POPULARITY_LABELS_VERSION};log_end={end}"
    if (reused := unchanged_result(context, lake, POPULARITY_LABELS, versions, code)) is not None:
        return reused
    with duckdb.get_connection() as conn:
        rows = label_rows(
            conn,
            read_pinned(lake, RAW_PHOTOS, versions, ["photo_id", "posted_at"]),
            events_at(lake, versions, "like", ["ts", "event", "photo_id"]),
            end,
        )
    complete = int(rows["complete"].sum())
    return snapshot_result(
        context,
        lake,
        POPULARITY_LABELS,
        rows,
        versions,
        {
            "complete": complete,
            "censored": rows.height - complete,
            "log_end": "" if end is None else end.isoformat() + "Z",
        },
        code_version=code,
    )


@dg.asset(
    deps=list(TRAINING_INPUTS),
    code_version=TRAINING_SET_VERSION,
    description="photo_features joined with complete popularity labels; split train/val/test "
    "by a SHA-256 of photo_id; the Delta version of each input is in `input_versions` (JSON, "
    "in the metadata and in each table version's commit: LakeResource.commit_metadata). "
    "Read it back with lakehouse.access.training.load(version=...).",
    freshness_policy=nightly_freshness(),
    **FEATURES,
)
def training_set(
    context: dg.AssetExecutionContext, lake: LakeResource, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    versions = pinned_versions(lake, TRAINING_INPUTS)
    reused = unchanged_result(context, lake, TRAINING_SET, versions, TRAINING_SET_VERSION)
    if reused is not None:  # its label distribution picture is carried over too
        return reused
    with duckdb.get_connection() as conn:
        rows = training_rows(
            conn,
            read_pinned(lake, PHOTO_FEATURES, versions),
            read_pinned(lake, POPULARITY_LABELS, versions),
        )
    splits = dict(rows.group_by("split").len().iter_rows())
    distribution = training_set_distribution(context, lake, rows)
    return snapshot_result(
        context,
        lake,
        TRAINING_SET,
        rows,
        versions,
        {
            **{f"{name}_rows": int(splits.get(name, 0)) for name in ("train", "val", "test")},
            **distribution,
        },
        code_version=TRAINING_SET_VERSION,
    )


def training_set_distribution(
    context: dg.AssetExecutionContext, lake: LakeResource, rows: pl.DataFrame
) -> dict[str, object]:
    """Label distribution per split (a picture) and the shift from the table's version
    before this run (a sortable table)."""
    before = lake.version(TRAINING_SET)
    previous = lake.read(TRAINING_SET, columns=["split", "likes_7d"])
    shift = split_shift(rows, previous)
    png = charts.grouped_bars(label_histogram(rows), "likes in 7 days by split", "share of rows")
    caption = "share of each split's rows per bucket of likes in 7 days (the label)"
    return {
        **picture(context, lake, "label_distribution", png, caption),
        "split_shift": dg.MetadataValue.table(
            records=[dg.TableRecord(record) for record in shift],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn("split", "string"),
                    dg.TableColumn("rows", "int"),
                    dg.TableColumn("rows_before", "int", description=f"in version {before}"),
                    dg.TableColumn("rows_change", "int"),
                    dg.TableColumn("mean_likes", "float", description="mean likes in 7 days"),
                    dg.TableColumn("mean_likes_before", "float"),
                    dg.TableColumn("mean_likes_change", "float"),
                ]
            ),
        ),
    }

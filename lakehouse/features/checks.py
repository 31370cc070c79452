"""Checks on the gold tables; the blocking ones stop a bad table from flowing downstream."""

from __future__ import annotations

import json

import dagster as dg
import polars as pl

from lakehouse.features.assets import events_at
from lakehouse.features.logic import REQUIRED_FEATURE_COLUMNS, oracle_counts
from lakehouse.graph.defaults import check_follows
from lakehouse.graph.reuse import reusing_pass
from lakehouse.lake import LakeResource
from lakehouse.lake.digests import frame_digest
from lakehouse.lake.tables import (
    PHOTO_FEATURES,
    POPULARITY_LABELS,
    RAW_EVENTS,
    RAW_PHOTOS,
    TRAINING_SET,
)
from lakehouse.memory import release_freed_memory

COUNTED = ("author_logins_24h", "author_likes_7d")
# every check here reads lake tables only, at pinned versions: a pass on the same versions
# by the same code is reported again without a read (graph.reuse); bump on a logic change
CHECKS_VERSION = "1"
Versions = dict[str, int | None]


def table(lake: LakeResource, name: str, version: int | None = None) -> pl.DataFrame:
    rows = lake.read(name, version=version)
    if rows is None:
        raise RuntimeError(f"no {name} table in the lake")
    return rows


def unique_photo_ids(lake: LakeResource, name: str, versions: Versions) -> dg.AssetCheckResult:
    ids = table(lake, name, versions[name])["photo_id"]
    duplicates = ids.filter(ids.is_duplicated()).unique().sort().to_list()
    return dg.AssetCheckResult(
        passed=not duplicates,
        description=f"{len(duplicates)} photo_id values appear more than once",
        metadata={"duplicates": len(duplicates), "examples": str(duplicates[:10])},
    )


@dg.asset_check(
    automation_condition=check_follows(),
    asset="photo_features",
    blocking=True,
    description="No leakage: an independent polars recount of each photo's author activity, "
    "over events strictly before posted_at, equals the stored counts, and the latest "
    "contributing event of every row is before posted_at.",
)
def photo_features_no_leakage(lake: LakeResource) -> dg.AssetCheckResult:
    # new classifier outputs make a new photo_features version with the same activity
    # columns: the pass on them stands, and only those columns are read to know it
    return reusing_pass(
        lake,
        "photo_features_no_leakage",
        CHECKS_VERSION,
        (PHOTO_FEATURES, RAW_PHOTOS, RAW_EVENTS),
        lambda versions: no_leakage(lake, versions),
        content={
            PHOTO_FEATURES: lambda version: frame_digest(
                checked_features(lake, version), ["photo_id"], CHECKED_FEATURES
            )
        },
    )


# what the no-leakage check reads of photo_features
CHECKED_FEATURES = ["photo_id", "posted_at", *COUNTED]


def checked_features(lake: LakeResource, version: int | None) -> pl.DataFrame:
    rows = lake.read(PHOTO_FEATURES, columns=CHECKED_FEATURES, version=version)
    if rows is None:
        raise RuntimeError(f"no {PHOTO_FEATURES} table in the lake")
    return rows


def no_leakage(lake: LakeResource, versions: Versions) -> dg.AssetCheckResult:
    # the recount reads every login and like again: it starts on what photo_features' own
    # reads left free but resident, which made it the run's peak at 100k photos
    release_freed_memory()
    features = checked_features(lake, versions[PHOTO_FEATURES])
    photos = table(lake, RAW_PHOTOS, versions[RAW_PHOTOS]).select(
        "photo_id", "user_id", "posted_at"
    )
    oracle = oracle_counts(
        photos,
        events_at(lake, versions, "login", ["user_id", "ts"]),
        events_at(lake, versions, "like", ["photo_id", "ts"]),
    )
    paired = features.join(oracle, on="photo_id", how="left", suffix="_recount")
    mismatched = paired.filter(
        pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_recount")) for c in COUNTED)
    )
    late = paired.filter(
        pl.any_horizontal(pl.col(f"{c}_last_ts") >= pl.col("posted_at") for c in COUNTED)
    )
    del oracle, paired
    release_freed_memory()  # the recount's pairs: the other checks and training_set run next
    return dg.AssetCheckResult(
        passed=mismatched.is_empty() and late.is_empty(),
        description=f"{mismatched.height} rows differ from the recount; "
        f"{late.height} rows counted an event at or after posted_at",
        metadata={
            "mismatched_rows": mismatched.height,
            "rows_with_late_events": late.height,
            "examples": str(mismatched["photo_id"].head(10).to_list()),
        },
    )


@dg.asset_check(
    automation_condition=check_follows(),
    asset="photo_features",
    blocking=True,
    description="photo_id is unique.",
)
def photo_features_unique(lake: LakeResource) -> dg.AssetCheckResult:
    return reusing_pass(
        lake,
        "photo_features_unique",
        CHECKS_VERSION,
        (PHOTO_FEATURES,),
        lambda versions: unique_photo_ids(lake, PHOTO_FEATURES, versions),
    )


@dg.asset_check(
    automation_condition=check_follows(),
    asset="photo_features",
    blocking=True,
    description="Required fields (ids, posted_at, calendar and activity features) are non-null.",
)
def photo_features_required_fields(lake: LakeResource) -> dg.AssetCheckResult:
    return reusing_pass(
        lake,
        "photo_features_required_fields",
        CHECKS_VERSION,
        (PHOTO_FEATURES,),
        lambda versions: required_fields(lake, versions),
    )


def required_fields(lake: LakeResource, versions: Versions) -> dg.AssetCheckResult:
    features = table(lake, PHOTO_FEATURES, versions[PHOTO_FEATURES])
    nulls = features.select(REQUIRED_FEATURE_COLUMNS).null_count().row(0, named=True)
    bad = {column: n for column, n in nulls.items() if n}
    return dg.AssetCheckResult(
        passed=not bad,
        description=f"null values in {bad}" if bad else "no nulls in required fields",
        metadata={"null_counts": dg.MetadataValue.json(bad)},
    )


@dg.asset_check(
    automation_condition=check_follows(),
    asset="photo_features",
    blocking=True,
    description="Counts reconcile: one photo_features row per photo in raw_photos.",
)
def photo_features_reconcile(lake: LakeResource) -> dg.AssetCheckResult:
    return reusing_pass(
        lake,
        "photo_features_reconcile",
        CHECKS_VERSION,
        (RAW_PHOTOS, PHOTO_FEATURES),
        lambda versions: features_reconcile(lake, versions),
    )


def features_reconcile(lake: LakeResource, versions: Versions) -> dg.AssetCheckResult:
    photos = table(lake, RAW_PHOTOS, versions[RAW_PHOTOS]).select("photo_id")
    features = table(lake, PHOTO_FEATURES, versions[PHOTO_FEATURES]).select("photo_id")
    missing = photos.join(features, on="photo_id", how="anti").height
    extra = features.join(photos, on="photo_id", how="anti").height
    return dg.AssetCheckResult(
        passed=photos.height == features.height and not missing and not extra,
        description=f"{photos.height} photos, {features.height} feature rows; "
        f"{missing} photos missing, {extra} rows without a photo",
        metadata={"photos": photos.height, "rows": features.height, "missing": missing},
    )


@dg.asset_check(
    automation_condition=check_follows(),
    asset="popularity_labels",
    blocking=True,
    description="photo_id is unique.",
)
def popularity_labels_unique(lake: LakeResource) -> dg.AssetCheckResult:
    return reusing_pass(
        lake,
        "popularity_labels_unique",
        CHECKS_VERSION,
        (POPULARITY_LABELS,),
        lambda versions: unique_photo_ids(lake, POPULARITY_LABELS, versions),
    )


@dg.asset_check(
    automation_condition=check_follows(),
    asset="training_set",
    blocking=True,
    description="Every training row's label window is complete in the popularity_labels "
    "version the row was built from, and photo_id is unique.",
)
def training_set_labels_complete(lake: LakeResource) -> dg.AssetCheckResult:
    return reusing_pass(
        lake,
        "training_set_labels_complete",
        CHECKS_VERSION,
        (TRAINING_SET, POPULARITY_LABELS),
        lambda versions: labels_complete(lake, versions[TRAINING_SET]),
    )


def labels_complete(lake: LakeResource, version: int | None) -> dg.AssetCheckResult:
    rows = table(lake, TRAINING_SET, version).select("photo_id")
    recorded = json.loads(str(lake.commit_metadata(TRAINING_SET, version)["input_versions"]))
    labels = table(lake, POPULARITY_LABELS, recorded[POPULARITY_LABELS])
    incomplete = rows.join(labels.filter(pl.col("complete")), on="photo_id", how="anti").height
    duplicates = rows.height - rows["photo_id"].n_unique()
    return dg.AssetCheckResult(
        passed=incomplete == 0 and duplicates == 0,
        description=f"{incomplete} rows without a complete label window (popularity_labels "
        f"version {recorded['popularity_labels']}), {duplicates} duplicate photo_ids",
        metadata={"incomplete": incomplete, "duplicates": duplicates},
    )

"""Observed sources: we read them, never write them, and version them by content.

Each observation reports a DataVersion computed from content only, so Dagster
marks downstream assets stale exactly when bytes or rows really changed.
"""

import dagster as dg
import polars as pl
from dagster._core.definitions.external_asset import create_external_asset_from_source_asset

from lakehouse.graph.partitions import log_days
from lakehouse.lake import LakeResource, commit_info_for
from lakehouse.lake.digests import digest_strings, frame_digest
from lakehouse.resources import MetadataDbResource, ObjectStoreResource
from lakehouse.resources.metadata_db import SOURCE_TABLES
from lakehouse.sources.contract import LOG_KEY, LOG_PREFIX, PHOTO_PREFIX
from lakehouse.sources.hashing import object_hashes

SOURCES_OWNERS = ["team:data-platform"]


def kinds(*names: str) -> dict[str, str]:
    """Kind tags, as `kinds=` stores them (observable_source_asset only takes `tags=`)."""
    return {f"dagster/kind/{name}": "" for name in names}


def owned(source: dg.SourceAsset) -> dg.AssetsDefinition:
    """The source as the asset Dagster would make of it, with owners, which
    observable_source_asset cannot take."""
    return create_external_asset_from_source_asset(source).map_asset_specs(
        lambda spec: spec.replace_attributes(owners=SOURCES_OWNERS)
    )


def pairs_digest(hashes: pl.DataFrame) -> str:
    """Version of a set of objects: digest of its sorted (key, sha256) pairs."""
    return digest_strings(
        f"{key}\t{sha}" for key, sha in hashes.sort("key").select("key", "sha256").iter_rows()
    )


def table_digest(rows: pl.DataFrame) -> str:
    """Version of a source table: digest of all its rows, independent of row order."""
    text_rows = rows.select(pl.all().cast(pl.String))
    return frame_digest(text_rows, key=text_rows.columns, columns=text_rows.columns)


def log_file_versions(hashes: pl.DataFrame) -> tuple[dict[str, str], list[str]]:
    """SHA-256 of each day's log file by partition key, and keys that are not day files."""
    valid_days = set(log_days.get_partition_keys())
    versions, ignored = {}, []
    for key, sha in hashes.select("key", "sha256").iter_rows():
        match = LOG_KEY.match(key)
        if match and match.group(1) in valid_days:
            versions[match.group(1)] = sha
        else:
            ignored.append(key)
    return versions, ignored


@dg.observable_source_asset(
    group_name="sources",
    description="Photos (JPEG/PNG) under `photos/` in the source object store.",
    tags=kinds("s3", "python"),
)
def photo_objects(
    context: dg.AssetExecutionContext, sources: ObjectStoreResource, lake: LakeResource
) -> dg.ObserveResult:
    hashed = object_hashes(sources, lake, PHOTO_PREFIX, commit_info_for(context))
    hashes, hashed_now = hashed.objects, hashed.hashed_now
    context.log.info(f"{hashes.height} photo objects, {hashed_now} hashed now (others cached)")
    return dg.ObserveResult(
        data_version=dg.DataVersion(pairs_digest(hashes)),
        metadata={
            "objects": hashes.height,
            "bytes": int(hashes["size"].sum() or 0),
            "hashed_now": hashed_now,
        },
    )


@dg.observable_source_asset(
    group_name="sources",
    description="Tables users, photos and photo_labels of the operational database.",
    tags=kinds("sql", "python"),
)
def metadata_db(
    context: dg.AssetExecutionContext, metadata_db: MetadataDbResource
) -> dg.ObserveResult:
    digests, counts = {}, {}
    for name in SOURCE_TABLES:
        rows = metadata_db.read_table(name)
        digests[name], counts[f"rows_{name}"] = table_digest(rows), rows.height
    context.log.info(f"metadata database: {counts}")
    return dg.ObserveResult(
        data_version=dg.DataVersion(digest_strings(f"{k}={v}" for k, v in sorted(digests.items()))),
        metadata=counts,
    )


@dg.observable_source_asset(
    group_name="sources",
    partitions_def=log_days,
    description="Activity logs, one JSON-lines file a day at `logs/YYYY-MM-DD.jsonl`.",
    tags=kinds("s3", "json"),
)
def activity_logs(
    context: dg.AssetExecutionContext, sources: ObjectStoreResource, lake: LakeResource
) -> dg.DataVersionsByPartition:
    hashed = object_hashes(sources, lake, LOG_PREFIX, commit_info_for(context))
    hashes, hashed_now = hashed.objects, hashed.hashed_now
    versions, ignored = log_file_versions(hashes)
    context.log.info(f"{len(versions)} log days, {hashed_now} files hashed now")
    if ignored:
        context.log.warning(f"not daily log files, ignored: {ignored[:20]}")
    return dg.DataVersionsByPartition(versions)


photo_objects = owned(photo_objects)
metadata_db = owned(metadata_db)
activity_logs = owned(activity_logs)

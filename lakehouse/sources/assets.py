"""Observed sources: we read them, never write them, and version them by content.

Each observation reports a DataVersion computed from content only, so Dagster
marks downstream assets stale exactly when bytes or rows really changed.
"""

from collections.abc import Collection, Iterator

import dagster as dg
import polars as pl

from lakehouse.graph.partitions import log_days
from lakehouse.lake import LakeResource, commit_info_for
from lakehouse.lake.digests import digest_strings, table_digest
from lakehouse.resources import MetadataDbResource, ObjectStoreResource
from lakehouse.resources.metadata_db import SOURCE_TABLES
from lakehouse.sources.contract import LOG_KEY, LOG_PREFIX, PHOTO_PREFIX
from lakehouse.sources.hashing import object_hashes

SOURCES_OWNERS = ["team:data-platform"]
# The observation tag Dagster reads a data version from (what ObserveResult.data_version
# becomes); an observation of one partition among many can only carry it as this tag.
DATA_VERSION_TAG = "dagster/data_version"
# Observations read back (newest first, a page at a time) to find the version each log day
# was last observed with; a day not found among them is observed again, which is never
# wrong, only one more event.
OBSERVED_PAGE = 500
OBSERVED_LOOKBACK = 5000


def source_spec(name: str, description: str, kinds: set[str], **spec: object) -> dg.AssetSpec:
    """One observed source: group `sources`, its owners and kinds."""
    return dg.AssetSpec(
        name,
        description=description,
        group_name="sources",
        owners=SOURCES_OWNERS,
        kinds=kinds,
        **spec,
    )


def pairs_digest(hashes: pl.DataFrame) -> str:
    """Version of a set of objects: digest of its sorted (key, sha256) pairs."""
    return digest_strings(
        f"{key}\t{sha}" for key, sha in hashes.sort("key").select("key", "sha256").iter_rows()
    )


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


def observed_day_versions(instance: dg.DagsterInstance, days: Collection[str]) -> dict[str, str]:
    """The data version each of `days` was last observed with in this instance; days never
    observed (or not among its newest OBSERVED_LOOKBACK observations) are absent."""
    wanted = dg.AssetRecordsFilter(
        asset_key=dg.AssetKey("activity_logs"), asset_partitions=sorted(days)
    )
    found: dict[str, str] = {}
    cursor, read = None, 0
    while len(found) < len(days) and read < OBSERVED_LOOKBACK:
        page = instance.fetch_observations(wanted, limit=OBSERVED_PAGE, cursor=cursor)
        for record in page.records:
            observation = record.asset_observation
            if observation is None or observation.partition is None:
                continue
            version = observation.tags.get(DATA_VERSION_TAG)
            if version is not None:
                found.setdefault(observation.partition, version)
        read += len(page.records)
        if not page.has_more:
            break
        cursor = page.cursor
    return found


@dg.multi_observable_source_asset(
    specs=[
        source_spec(
            "photo_objects",
            "Photos (JPEG/PNG) under `photos/` in the source object store.",
            {"s3", "python"},
        )
    ]
)
def photo_objects(
    context: dg.AssetExecutionContext, sources: ObjectStoreResource, lake: LakeResource
) -> dg.ObserveResult:
    # probed from the same bytes, so raw_objects does not read a photo again
    hashed = object_hashes(
        sources, lake, PHOTO_PREFIX, commit_info_for(context), probe=True, log=context.log.info
    )
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


@dg.multi_observable_source_asset(
    specs=[
        source_spec(
            "metadata_db",
            "Tables users, photos and photo_labels of the operational database.",
            {"sql", "python"},
        )
    ]
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


@dg.multi_observable_source_asset(
    specs=[
        source_spec(
            "activity_logs",
            "Activity logs, one JSON-lines file a day at `logs/YYYY-MM-DD.jsonl`.",
            {"s3", "json"},
            partitions_def=log_days,
            # Versioned per day by the observations it yields, so it has no output of its own.
            skippable=True,
        )
    ],
)
def activity_logs(
    context: dg.AssetExecutionContext, sources: ObjectStoreResource, lake: LakeResource
) -> Iterator[dg.AssetObservation]:
    """An observation per day file whose content differs from the one last observed, its
    data version the file's SHA-256 (one run sees all days, whatever partition, if any, it
    was launched for). A day whose file is unchanged keeps its last observation: the same
    version again would tell Dagster nothing, and costs an event per day on every look
    (60 of a no-change run's ~500)."""
    hashed = object_hashes(sources, lake, LOG_PREFIX, commit_info_for(context))
    hashes, hashed_now = hashed.objects, hashed.hashed_now
    versions, ignored = log_file_versions(hashes)
    observed = observed_day_versions(context.instance, versions)
    changed = {day: sha for day, sha in versions.items() if observed.get(day) != sha}
    context.log.info(
        f"{len(versions)} log days, {hashed_now} files hashed now; {len(changed)} new or "
        "changed since their last observation"
    )
    if ignored:
        context.log.warning(f"not daily log files, ignored: {ignored[:20]}")
    for day, sha in changed.items():
        yield dg.AssetObservation("activity_logs", partition=day, tags={DATA_VERSION_TAG: sha})


@dg.multi_observable_source_asset(
    specs=[
        source_spec(
            "activity_log_days",
            "Every daily log file at once: a digest of (day, SHA-256) over all days. The "
            "unpartitioned assets that read every log day depend on it, so a rewritten old "
            "day marks them stale (Dagster does not carry a daily partition's data version "
            "to an unpartitioned child).",
            {"s3", "json"},
        )
    ]
)
def activity_log_days(
    context: dg.AssetExecutionContext, sources: ObjectStoreResource, lake: LakeResource
) -> dg.ObserveResult:
    hashed = object_hashes(sources, lake, LOG_PREFIX, commit_info_for(context))
    versions, _ = log_file_versions(hashed.objects)
    context.log.info(f"{len(versions)} log days")
    return dg.ObserveResult(
        data_version=dg.DataVersion(
            digest_strings(f"{day}\t{sha}" for day, sha in sorted(versions.items()))
        ),
        metadata={"days": len(versions), "last_day": max(versions, default="")},
    )

"""Bronze: faithful copies of the sources as Delta tables, bad input in quarantine.

Every asset here does row-level incremental work (only new content is read or
parsed), commits nothing when nothing changed, and reports a DataVersion
computed from its output content.
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime

import dagster as dg
import polars as pl

from lakehouse.graph.defaults import layer_defaults
from lakehouse.graph.reuse import StepState, remember_state, reused_state, step_state
from lakehouse.lake import LakeResource, commit_info_for, table_metadata
from lakehouse.lake.digests import (
    code_digest,
    digest_strings,
    frame_digest,
    frame_fingerprint,
    table_digest,
)
from lakehouse.lake.ledger import DayBatch, changed_days, rebuild_changed_days
from lakehouse.lake.metadata import frame_table, partition_row_count
from lakehouse.lake.quarantine import QUARANTINE_TABLE, active_quarantine, sync_quarantine
from lakehouse.lake.rejections import QUARANTINE_SCHEMA, rejection, rejections_frame
from lakehouse.lake.tables import (
    RAW_EVENTS,
    RAW_OBJECTS,
    RAW_PHOTO_LABELS,
    RAW_PHOTOS,
    RAW_USERS,
    key_of,
)
from lakehouse.progress import Progress
from lakehouse.raw.logs import parse_log_day
from lakehouse.raw.metadata import (
    SourceSchemaError,
    validate_labels,
    validate_photos,
    validate_users,
)
from lakehouse.raw.objects import (
    OBJECT_KEY,
    RAW_OBJECTS_SCHEMA,
    registry_changes,
)
from lakehouse.resources import MetadataDbResource, ObjectStoreResource
from lakehouse.resources.errors import permanent
from lakehouse.sources.contract import (
    LOG_PREFIX,
    LOGS_SOURCE,
    OBJECTS_SOURCE,
    PHOTO_PREFIX,
    log_key,
)
from lakehouse.sources.hashing import CACHE_SCHEMA, object_hashes

RAW = layer_defaults("raw", "team:data-platform", kinds={"delta", "python"})
RAW_DAILY = layer_defaults("raw", "team:data-platform", daily=True, kinds={"delta", "python"})


@dg.asset(
    deps=["photo_objects"],
    code_version="1",
    description="One row per photo object version: key, sha256, size, media type, pixel size, "
    "first/last seen and status (current, replaced, deleted).",
    **RAW,
)
def raw_objects(
    context: dg.AssetExecutionContext, sources: ObjectStoreResource, lake: LakeResource
) -> dg.MaterializeResult:
    lake.ensure_writable()
    info, now = commit_info_for(context), datetime.now(UTC)
    # the hashes and header probes of every photo, each object read at most once (the
    # observation before this step usually read them all, and nothing is read here)
    hashed = object_hashes(sources, lake, PHOTO_PREFIX, info, probe=True, log=context.log.info)
    hashes = hashed.objects
    # the registry follows from the objects' hashes and probes, itself and the quarantine
    state = step_state(lake, RAW_OBJECTS, objects_code(hashes), (RAW_OBJECTS,), (OBJECTS_SOURCE,))
    if (reused := reused_state(context, lake, state)) is not None:
        return reused
    registry = lake.read_or_empty(RAW_OBJECTS, RAW_OBJECTS_SCHEMA)
    quarantined = active_quarantine(lake, OBJECTS_SOURCE)
    known_bad = quarantined.join(hashes.select(OBJECT_KEY), on=OBJECT_KEY, how="semi")
    known_good = hashes.select("key", "sha256", "size", "stamp").join(
        registry.select(*OBJECT_KEY, "media_type", "width", "height").unique(OBJECT_KEY),
        on=OBJECT_KEY,
    )
    probed = hashes.join(known_good, on=OBJECT_KEY, how="anti").join(
        known_bad, on=OBJECT_KEY, how="anti"
    )
    context.log.info(
        f"{hashes.height} objects ({hashed.hashed_now} read now); {probed.height} new versions"
    )
    current = pl.concat(
        [known_good, probed.filter(pl.col("reason").is_null()).drop("reason")],
        how="diagonal_relaxed",
    ).select("key", "sha256", "size", "media_type", "width", "height")
    changes = registry_changes(registry, current, hashes["key"], now)
    lake.upsert(RAW_OBJECTS, changes, commit_info=info)
    rejected = rejections_frame(
        OBJECTS_SOURCE,
        [
            *known_bad.select("key", "line", "sha256", "reason", "detail").to_dicts(),
            *(
                rejection(key, reason, sha256=sha)
                for key, sha, reason in probed.filter(pl.col("reason").is_not_null())
                .select("key", "sha256", "reason")
                .iter_rows()
            ),
        ],
    )
    counts = sync_quarantine(lake, OBJECTS_SOURCE, rejected, now=now, commit_info=info)
    context.log.info(f"raw_objects: {changes.height} rows changed; quarantine {counts}")
    result = dg.MaterializeResult(
        data_version=dg.DataVersion(frame_digest(current, OBJECT_KEY, current.columns)),
        metadata={
            **table_metadata(lake, RAW_OBJECTS, current.height, probed.height),
            "objects_in_source": hashes.height,
            "quarantined": counts["active"],
        },
    )
    return remember_state(context, lake, state, result)


# what raw_objects takes of each object: all but its stamp (new bytes get a new sha256)
HASHED_FACTS = [name for name in CACHE_SCHEMA if name != "stamp"]


def objects_code(hashes: pl.DataFrame) -> str:
    """The code of raw_objects and a digest of the objects' hashes and probes: with the
    versions of its tables, all its result follows from."""
    facts = frame_fingerprint(hashes.sort("key"), HASHED_FACTS)
    return f"{code_digest(__name__, 'lakehouse.raw.objects')}:{facts}"


def source_state(
    lake: LakeResource,
    name: str,
    source: str,
    rows: pl.DataFrame,
    reads: Sequence[str] = (),
    scopes: Sequence[str] = (),
) -> StepState:
    """The state a snapshot of `source`'s rows `rows` into table `name` starts from: the
    rows themselves (a digest) and the code, the lake tables it checks them against
    (`reads`), its own table, and the quarantine rows of `source` and of `scopes`."""
    code = f"{code_digest(__name__, 'lakehouse.raw.metadata')}:{table_digest(rows)}"
    return step_state(lake, name, code, (*reads, name), (source, *scopes))


def sync_metadata_table(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    name: str,
    source: str,
    accepted: pl.DataFrame,
    rejected: pl.DataFrame,
) -> dg.MaterializeResult:
    """Snapshot a validated source table into the lake (by its registry key); its rejects
    into quarantine."""
    info, now = commit_info_for(context), datetime.now(UTC)
    changes = lake.sync_snapshot(name, accepted, commit_info=info)
    counts = sync_quarantine(
        lake, source, rejections_frame(source, rejected), now=now, commit_info=info
    )
    context.log.info(f"{name}: {changes}; quarantine {counts}")
    computed = changes["inserted"] + changes["updated"]
    return dg.MaterializeResult(
        data_version=dg.DataVersion(
            frame_digest(accepted, key_of(name), [*key_of(name), "row_sha256"])
        ),
        metadata={
            **table_metadata(lake, name, accepted.height, computed),
            "rows_in_source": accepted.height + rejected.height,
            "quarantined": rejected.height,
            **{f"rows_{kind}": n for kind, n in changes.items()},
        },
    )


@dg.asset(
    deps=["metadata_db"],
    code_version="1",
    description="Snapshot of metadata_db.users (valid rows; the rest in quarantine).",
    **RAW,
)
def raw_users(
    context: dg.AssetExecutionContext, metadata_db: MetadataDbResource, lake: LakeResource
) -> dg.MaterializeResult:
    lake.ensure_writable()
    source = metadata_db.read_table("users")
    state = source_state(lake, RAW_USERS, "metadata_db.users", source)
    if (reused := reused_state(context, lake, state)) is not None:
        return reused
    with permanent(SourceSchemaError):
        checked = validate_users(source)
    synced = sync_metadata_table(
        context,
        lake,
        RAW_USERS,
        "metadata_db.users",
        checked.accepted,
        checked.rejected,
    )
    return remember_state(context, lake, state, synced)


@dg.asset(
    deps=["metadata_db", "raw_users", "raw_objects"],
    code_version="1",
    description="Snapshot of metadata_db.photos: rows with a known author, an accepted "
    "object and sane coordinates; every other row is quarantined with its reasons.",
    **RAW,
)
def raw_photos(
    context: dg.AssetExecutionContext, metadata_db: MetadataDbResource, lake: LakeResource
) -> dg.MaterializeResult:
    lake.ensure_writable()
    source = metadata_db.read_table("photos")
    state = source_state(
        lake, RAW_PHOTOS, "metadata_db.photos", source, (RAW_USERS, RAW_OBJECTS), [OBJECTS_SOURCE]
    )
    if (reused := reused_state(context, lake, state)) is not None:
        return reused
    users = lake.read(RAW_USERS, columns=["user_id"])
    registry = lake.read(RAW_OBJECTS, columns=["key", "status"])
    accepted_objects = (
        pl.DataFrame(schema={"key": pl.String})
        if registry is None
        else registry.filter(pl.col("status") == "current").select("key")
    )
    objects = pl.concat(
        [
            accepted_objects.with_columns(problem=pl.lit(None, pl.String)),
            active_quarantine(lake, OBJECTS_SOURCE).select("key", problem="reason"),
        ]
    )
    with permanent(SourceSchemaError):
        checked = validate_photos(
            source,
            pl.Series("user_id", [], pl.Int64) if users is None else users["user_id"],
            objects,
        )
    synced = sync_metadata_table(
        context,
        lake,
        RAW_PHOTOS,
        "metadata_db.photos",
        checked.accepted,
        checked.rejected,
    )
    return remember_state(context, lake, state, synced)


@dg.asset(
    deps=["metadata_db", "raw_photos"],
    code_version="2",
    description="Snapshot of metadata_db.photo_labels for accepted photos, with who labelled "
    "each (`labeled_by`, null where the source does not say).",
    **RAW,
)
def raw_photo_labels(
    context: dg.AssetExecutionContext, metadata_db: MetadataDbResource, lake: LakeResource
) -> dg.MaterializeResult:
    lake.ensure_writable()
    source = metadata_db.read_table("photo_labels")
    state = source_state(lake, RAW_PHOTO_LABELS, "metadata_db.photo_labels", source, (RAW_PHOTOS,))
    if (reused := reused_state(context, lake, state)) is not None:
        return reused
    photos = lake.read(RAW_PHOTOS, columns=["photo_id"])
    with permanent(SourceSchemaError):
        checked = validate_labels(
            source,
            pl.Series("photo_id", [], pl.Int64) if photos is None else photos["photo_id"],
        )
    synced = sync_metadata_table(
        context,
        lake,
        RAW_PHOTO_LABELS,
        "metadata_db.photo_labels",
        checked.accepted,
        checked.rejected,
    )
    return remember_state(context, lake, state, synced)


def parse_log_days(
    context: dg.AssetExecutionContext,
    sources: ObjectStoreResource,
    lake: LakeResource,
    days: list[str],
    file_sha: dict[str, str],
    now: datetime,
    progress: Progress | None = None,
) -> DayBatch:
    """Parse some days' files: their events, per day the lines read, accepted and rejected,
    and the quarantine commit of their rejected lines (made after the events, before the
    ledger: see rebuild_changed_days)."""
    info = commit_info_for(context)
    keys = [log_key(day) for day in days]
    parsed = []
    for day, key in zip(days, keys, strict=True):
        data = sources.read(key) if file_sha.get(key) else b""
        parsed.append(parse_log_day(data, key, date.fromisoformat(day)))
        if progress is not None:
            progress.advance(1, note=f"{day}: {parsed[-1].events.height:,} events")
    events = pl.concat([p.events for p in parsed])
    rejected = rejections_frame(LOGS_SOURCE, [row for p in parsed for row in p.rejected])
    context.log.info(
        f"{days[0]}..{days[-1]}: {events.height} events, {rejected.height} "
        f"line{'' if rejected.height == 1 else 's'} quarantined"
    )
    return DayBatch(
        rows=events,
        counts={
            day: (p.events.height + len(p.rejected), p.events.height, len(p.rejected))
            for day, p in zip(days, parsed, strict=True)
        },
        with_rows=lambda: sync_quarantine(
            lake, LOGS_SOURCE, rejected, now=now, commit_info=info, keys=keys
        ),
    )


@dg.asset(
    deps=["activity_logs"],
    code_version="1",
    description="Parsed activity-log events, partitioned by day; unparseable lines are "
    "quarantined with their line number and reason.",
    **RAW_DAILY,
)
def raw_events(
    context: dg.AssetExecutionContext, sources: ObjectStoreResource, lake: LakeResource
) -> dg.MaterializeResult:
    lake.ensure_writable()
    info, now = commit_info_for(context), datetime.now(UTC)
    hashes = object_hashes(sources, lake, LOG_PREFIX, info).objects
    file_sha = dict(hashes.select("key", "sha256").iter_rows())
    days = context.partition_keys
    digests = {day: file_sha.get(log_key(day), "") for day in days}
    # a line every few seconds while the changed days are parsed: rate and ETA
    todo = changed_days(lake, "raw_events", digests, log_key)
    with Progress("raw_events: parsing log days", len(todo), context.log.info, unit="days") as p:
        rebuilt = rebuild_changed_days(
            lake,
            "raw_events",
            RAW_EVENTS,
            digests,
            lambda chunk: parse_log_days(context, sources, lake, chunk, file_sha, now, p),
            commit_info=info,
            ledger_key=log_key,
        )
    context.log.info(f"raw_events: parsed {len(rebuilt.days)} of {len(days)} days")
    version = digest_strings(f"{day}\t{file_sha.get(log_key(day), '')}" for day in days)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            **table_metadata(lake, RAW_EVENTS, lake.row_count(RAW_EVENTS), rebuilt.rows),
            "days_parsed": len(rebuilt.days),
            "days_in_run": len(days),
            **partition_row_count(lake, RAW_EVENTS, days),
        },
    )


@dg.asset(
    deps=[
        "raw_objects",
        "raw_users",
        "raw_photos",
        "raw_photo_labels",
        "raw_events",
        "activity_log_days",
    ],
    code_version="1",
    description="Every rejected input (object, database row, log line) with source, key or "
    "line, reason and first_seen; `resolved_at` is set once the input is fixed.",
    **RAW,
)
def quarantine(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    rows = lake.read_or_empty(QUARANTINE_TABLE, QUARANTINE_SCHEMA)
    active = rows.filter(pl.col("resolved_at").is_null())
    by_reason = (
        active.group_by("source", "reason").len().sort("source", "reason")
        if active.height
        else pl.DataFrame(schema={"source": pl.String, "reason": pl.String, "len": pl.UInt32})
    )
    context.log.info(f"quarantine: {active.height} active rows")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(frame_digest(active, ["quarantine_id"], ["quarantine_id"])),
        metadata={
            **table_metadata(lake, QUARANTINE_TABLE, rows.height, 0),
            "active": active.height,
            "by_reason": frame_table(by_reason.rename({"len": "rows"})),
        },
    )

"""The photo registry: one row per object version, from hashes and header probes
(`lakehouse.sources.probe` reads each object once for both)."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from lakehouse.sources.probe import MEDIA_TYPES, ObjectProbe, probe_object

__all__ = ["MEDIA_TYPES", "RAW_OBJECTS_SCHEMA", "ObjectProbe", "probe_object", "registry_changes"]

UTC_TS = pl.Datetime("us", "UTC")
RAW_OBJECTS_SCHEMA: dict[str, pl.DataType] = {
    "key": pl.String(),
    "sha256": pl.String(),
    "size": pl.Int64(),
    "media_type": pl.String(),
    "width": pl.Int64(),
    "height": pl.Int64(),
    "first_seen": UTC_TS,
    "last_seen": UTC_TS,
    "status": pl.String(),
}
OBJECT_KEY = ["key", "sha256"]


def registry_changes(
    registry: pl.DataFrame, current: pl.DataFrame, source_keys: pl.Series, now: datetime
) -> pl.DataFrame:
    """Rows of `raw_objects` that must change so that it describes `current`.

    One row per object version (key, sha256). A version seen for the first time
    is inserted as `current`; one that left the source becomes `replaced` (its
    key, among `source_keys`, now has other bytes) or `deleted` (its key is gone), with `last_seen`
    set; one that comes back is `current` again. Unchanged versions yield no row.
    """
    new = current.join(registry, on=OBJECT_KEY, how="anti").with_columns(
        first_seen=pl.lit(now, UTC_TS), last_seen=pl.lit(None, UTC_TS), status=pl.lit("current")
    )
    back = (
        registry.filter(pl.col("status") != "current")
        .join(current.select(OBJECT_KEY), on=OBJECT_KEY, how="semi")
        .with_columns(last_seen=pl.lit(None, UTC_TS), status=pl.lit("current"))
    )
    gone = (
        registry.filter(pl.col("status") == "current")
        .join(current.select(OBJECT_KEY), on=OBJECT_KEY, how="anti")
        .with_columns(
            last_seen=pl.lit(now, UTC_TS),
            status=pl.when(pl.col("key").is_in(source_keys.implode()))
            .then(pl.lit("replaced"))
            .otherwise(pl.lit("deleted")),
        )
    )
    return pl.concat(
        [
            frame.select(list(RAW_OBJECTS_SCHEMA)).cast(RAW_OBJECTS_SCHEMA)
            for frame in (new, back, gone)
        ]
    )

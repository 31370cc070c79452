"""Curated data computed from raw rows: pure polars, no Dagster, no storage."""

from __future__ import annotations

import polars as pl

UTC_TS = pl.Datetime("us", "UTC")
ACTIVITY_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.String(),
    "user_id": pl.Int64(),
    "hour": UTC_TS,
    "logins": pl.Int64(),
    "views": pl.Int64(),
    "likes": pl.Int64(),
}


def hourly_activity(events: pl.DataFrame) -> pl.DataFrame:
    """Logins, views and likes per (log day, user, UTC hour); `day` is the raw_events partition."""
    if events.is_empty():
        return pl.DataFrame(schema=ACTIVITY_SCHEMA)
    return (
        events.group_by("day", "user_id", pl.col("ts").dt.truncate("1h").alias("hour"))
        .agg(
            logins=(pl.col("event") == "login").sum().cast(pl.Int64),
            views=(pl.col("event") == "view").sum().cast(pl.Int64),
            likes=(pl.col("event") == "like").sum().cast(pl.Int64),
        )
        .select(list(ACTIVITY_SCHEMA))
        .sort("day", "user_id", "hour")
    )

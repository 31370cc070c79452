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


def photo_images(photos: pl.DataFrame, images: pl.DataFrame) -> pl.DataFrame:
    """Photos joined to the sha256 of their object (images lists every key holding the bytes).

    The one photo -> content join: features, labels and models all reach an image this way,
    so a photo whose object is not a decoded image drops out of each of them alike.
    """
    by_key = images.select("sha256", "keys").explode("keys").rename({"keys": "object_key"})
    return photos.join(by_key, on="object_key", how="inner")


def hourly_activity(events: pl.DataFrame) -> pl.DataFrame:
    """Logins, views and likes per (log day, user, UTC hour), sorted so; `day` is the
    raw_events partition. A day at a time: nearly every event is a group of its own, and
    grouping 8 days of 1.3M events at once peaked +390 MiB and took 0.5 s, a day at a
    time +60 MiB and 0.27 s (100k-photo world)."""
    if events.is_empty():
        return pl.DataFrame(schema=ACTIVITY_SCHEMA)
    return pl.concat(
        events.filter(pl.col("day") == day)
        .group_by("day", "user_id", pl.col("ts").dt.truncate("1h").alias("hour"))
        .agg(
            logins=(pl.col("event") == "login").sum().cast(pl.Int64),
            views=(pl.col("event") == "view").sum().cast(pl.Int64),
            likes=(pl.col("event") == "like").sum().cast(pl.Int64),
        )
        .select(list(ACTIVITY_SCHEMA))
        .sort("user_id", "hour")
        for day in events["day"].unique().sort()
    )

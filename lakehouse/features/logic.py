"""Pure feature logic: point-in-time joins, labels, splits. No Dagster, no storage: the
SQL runs on the DuckDB connection the caller passes (an asset's `duckdb` resource, or
lakehouse.lake.sql.connection() in tests and benchmarks).

Timestamps enter the range joins as integer microseconds since the epoch, so
every window is plain integer arithmetic: no time zone or DST can move an edge.
Windows are half-open: author activity counts events in [posted_at - w, posted_at)
(nothing at or after posting contributes) and labels count likes in
[posted_at, posted_at + 7 d).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import duckdb
import polars as pl

from lakehouse.curated.logic import photo_images
from lakehouse.lake.digests import hash_bucket, with_row_digest
from lakehouse.lake.sql import run_sql
from lakehouse.vocabulary import CONTENT_CLASSES, STYLES

MICROS = 1_000_000
LOGIN_WINDOW = timedelta(hours=24)
RECEIVED_LIKES_WINDOW = timedelta(days=7)
LABEL_WINDOW = timedelta(days=7)
SPLIT_BUCKETS = 20  # 60 % train, 20 % val, 20 % test
SPLITS = (("train", 12), ("val", 16), ("test", 20))
UTC_TS = pl.Datetime("us", "UTC")

CONTENT_COLUMNS = [f"content_p_{name}" for name in CONTENT_CLASSES]
STYLE_COLUMNS = [f"style_p_{name}" for name in STYLES]
CLASSIFIER_COLUMNS = [*CONTENT_COLUMNS, *STYLE_COLUMNS]
NUMERIC_FEATURES = [
    "hour_of_day",
    "weekday",
    "title_length",
    "latitude",
    "longitude",
    "author_logins_24h",
    "author_likes_7d",
    "account_age_days",
    *CLASSIFIER_COLUMNS,
]
REQUIRED_FEATURE_COLUMNS = [
    "photo_id",
    "user_id",
    "posted_at",
    "hour_of_day",
    "weekday",
    "title_length",
    "author_logins_24h",
    "author_likes_7d",
]


LABELS_SQL = """
SELECT p.photo_id, count(e.ts)::BIGINT AS likes_7d
FROM photos p LEFT JOIN events e
  ON e.event = 'like' AND e.photo_id = p.photo_id
 AND e.ts >= p.posted_at AND e.ts < p.posted_at + $label_window
GROUP BY p.photo_id
ORDER BY p.photo_id
"""


def micros(window: timedelta) -> int:
    return window // timedelta(microseconds=1)


def epoch_micros(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """`column` as Int64 microseconds since the epoch (UTC), for integer range joins."""
    return frame.with_columns(pl.col(column).dt.epoch("us"))


def author_activity(
    conn: duckdb.DuckDBPyConnection, photos: pl.DataFrame, events: pl.DataFrame
) -> pl.DataFrame:
    """Per photo: author's logins in the 24 h and likes received in the 7 d before posting.

    `conn` is unused (the counts are a polars sort); it stays so every caller keeps
    its call.
    """
    del conn
    logins = events.filter(pl.col("event") == "login").select("user_id", "ts")
    likes = events.filter(pl.col("event") == "like").select("photo_id", "ts")
    return activity_counts(photos, logins, likes)


def activity_counts(
    photos: pl.DataFrame, logins: pl.DataFrame, likes: pl.DataFrame
) -> pl.DataFrame:
    """`author_activity` from the only events it counts: logins (user_id, ts) and likes
    (photo_id, ts). A caller that reads just these rows and columns holds a fraction of
    the log (at 10.5M events, 7.1M logins and 1M likes as two integer pairs)."""
    posts = epoch_micros(photos.select("photo_id", "user_id", "posted_at"), "posted_at")
    logins = epoch_micros(logins.select("user_id", "ts"), "ts")
    received = (
        epoch_micros(likes.select("photo_id", "ts"), "ts")
        .join(posts.select("photo_id", "user_id"), on="photo_id")
        .select("user_id", "ts")
    )
    return posts.select(
        "photo_id",
        author_logins_24h=by_author_buckets(posts, logins, micros(LOGIN_WINDOW)),
        author_likes_7d=by_author_buckets(posts, received, micros(RECEIVED_LIKES_WINDOW)),
    ).sort("photo_id", maintain_order=True)


HITS_PER_BUCKET = 2_000_000


def by_author_buckets(
    posts: pl.DataFrame, hits: pl.DataFrame, window_us: int, per_bucket: int = HITS_PER_BUCKET
) -> pl.Series:
    """`events_before_posting` over buckets of authors (user_id modulo the bucket count),
    at most about `per_bucket` hits sorted at a time: a post's count depends on its own
    author's hits only, so the counts are the same, and the sort's copies of the hits
    (7.1M logins at 100k photos: ~500 MiB) shrink with the bucket."""
    buckets = max(1, -(-hits.height // per_bucket))
    if buckets == 1:
        return events_before_posting(posts, hits, window_us)
    placed = posts.with_row_index("position")
    counts = []
    for bucket in range(buckets):
        mine = placed.filter(pl.col("user_id").fill_null(0) % buckets == bucket)
        theirs = hits.filter(pl.col("user_id") % buckets == bucket)
        found = events_before_posting(mine, theirs, window_us)
        counts.append(mine.select("position", count=found))
    return pl.concat(counts).sort("position")["count"]


def events_before_posting(posts: pl.DataFrame, hits: pl.DataFrame, window_us: int) -> pl.Series:
    """Per post (in `posts`' order): its author's `hits` in [posted_at - window, posted_at).

    One sort, O(n log n) at any activity level: the hits and two marks per post
    (at posted_at and at the window's start) in (user, time) order, a mark before a hit
    at the same instant (so the edges are strict where they must be); the running count
    of hits at a mark is the number of hits before it in that order, and the difference
    between a post's two marks (same user, so the users before it cancel) is the count
    in the window. A range join pairs every post with all its author's events instead.
    """
    n = posts.height
    marks = posts.select(
        pl.col("user_id").cast(pl.Int64), t="posted_at", mark=pl.int_range(0, n, dtype=pl.Int64)
    ).vstack(
        posts.select(
            pl.col("user_id").cast(pl.Int64),
            t=pl.col("posted_at") - window_us,
            mark=pl.int_range(n, 2 * n, dtype=pl.Int64),
        )
    )
    stacked = pl.concat(
        [
            marks,
            hits.drop_nulls().select(
                pl.col("user_id").cast(pl.Int64), t="ts", mark=pl.lit(None, pl.Int64)
            ),
        ]
    )
    is_hit = pl.col("mark").is_null()
    before = (
        stacked.sort(*time_order(stacked, is_hit))
        .with_columns(before=is_hit.cum_sum().cast(pl.Int64))
        .filter(~is_hit)
        .sort("mark")["before"]
    )
    return before[:n] - before[n:]


def time_order(stacked: pl.DataFrame, is_hit: pl.Expr) -> list[pl.Expr]:
    """Sort keys for (user_id, t, is_hit): one Int64 where the ranges allow it (exact:
    bounds checked in Python integers), about seven times faster to sort than the
    three columns it packs; the three columns otherwise."""
    bounds = stacked.select(
        pl.col("user_id").min().alias("u0"),
        pl.col("user_id").max().alias("u1"),
        pl.col("t").min().alias("t0"),
        pl.col("t").max().alias("t1"),
    ).row(0)
    if None not in bounds:
        u0, u1, t0, t1 = bounds
        width = 2 * (t1 - t0) + 2
        if (u1 - u0 + 1) * width < 2**63:
            key = (pl.col("user_id") - u0) * width + (pl.col("t") - t0) * 2 + is_hit.cast(pl.Int64)
            return [key]
    return [pl.col("user_id"), pl.col("t"), is_hit]


def classifier_outputs(
    photos: pl.DataFrame, images: pl.DataFrame, classes: pl.DataFrame
) -> pl.DataFrame:
    """Per photo: the classifier's probabilities as columns and its labels, via object_key."""
    latest = classes.sort("sha256", "model_version").unique("sha256", keep="last")
    return (
        photo_images(photos.select("photo_id", "object_key"), images)
        .join(latest, on="sha256", how="inner")
        .select(
            "photo_id",
            pl.col("model_version").alias("classifier_version"),
            "content_label",
            "style_label",
            *(
                pl.col("content_probs").list.get(i).cast(pl.Float64).alias(name)
                for i, name in enumerate(CONTENT_COLUMNS)
            ),
            *(
                pl.col("style_probs").list.get(i).cast(pl.Float64).alias(name)
                for i, name in enumerate(STYLE_COLUMNS)
            ),
        )
    )


def photo_feature_rows(
    conn: duckdb.DuckDBPyConnection,
    photos: pl.DataFrame,
    users: pl.DataFrame,
    events: pl.DataFrame,
    images: pl.DataFrame,
    classes: pl.DataFrame,
) -> pl.DataFrame:
    """One row per photo: metadata, author activity as of posted_at, classifier outputs."""
    activity = author_activity(conn, photos, events)
    return feature_rows(conn, photos, users, activity, images, classes)


def feature_rows(
    conn: duckdb.DuckDBPyConnection,
    photos: pl.DataFrame,
    users: pl.DataFrame,
    activity: pl.DataFrame,
    images: pl.DataFrame,
    classes: pl.DataFrame,
) -> pl.DataFrame:
    """`photo_feature_rows` with the author activity already counted (`activity_counts`)."""
    created = users.select("user_id", "created_at")
    rows = (
        photos.join(activity, on="photo_id", how="left")
        .join(created, on="user_id", how="left")
        .join(classifier_outputs(photos, images, classes), on="photo_id", how="left")
        .with_columns(
            hour_of_day=pl.col("posted_at").dt.hour().cast(pl.Int64),
            weekday=pl.col("posted_at").dt.weekday().cast(pl.Int64),
            title_length=pl.col("title").fill_null("").str.len_chars().cast(pl.Int64),
            account_age_days=(pl.col("posted_at") - pl.col("created_at")).dt.total_microseconds()
            / (86_400 * MICROS),
        )
        .select(
            "photo_id",
            "user_id",
            "posted_at",
            *NUMERIC_FEATURES[:5],
            "location_name",
            *NUMERIC_FEATURES[5:8],
            "classifier_version",
            "content_label",
            "style_label",
            *CLASSIFIER_COLUMNS,
        )
        .sort("photo_id")
    )
    return with_row_digest(rows, conn)


CLASSIFIER_OUTPUTS = ["classifier_version", "content_label", "style_label", *CLASSIFIER_COLUMNS]


def with_new_classifier_outputs(
    conn: duckdb.DuckDBPyConnection,
    stored: pl.DataFrame,
    photos: pl.DataFrame,
    images: pl.DataFrame,
    classes: pl.DataFrame,
) -> pl.DataFrame:
    """`photo_feature_rows` when only images or classes changed since `stored` (rows it
    computed from the very photos, users and events given now): the metadata and the
    point-in-time activity stand, the classifier's columns are joined again."""
    columns = [column for column in stored.columns if column != "row_sha256"]
    rows = (
        stored.drop(*CLASSIFIER_OUTPUTS, "row_sha256", strict=False)
        .join(classifier_outputs(photos, images, classes), on="photo_id", how="left")
        .select(columns)
        .sort("photo_id")
    )
    return with_row_digest(rows, conn)


def log_end(ledger: pl.DataFrame | None) -> datetime | None:
    """End (exclusive) of the last complete log day: midnight after the last day with a file."""
    if ledger is None:
        return None
    days = ledger.filter((pl.col("asset") == "raw_events") & (pl.col("sha256") != ""))["key"]
    if days.is_empty():
        return None
    last = days.str.extract(r"(\d{4}-\d{2}-\d{2})").str.to_date().max()
    return datetime(last.year, last.month, last.day) + timedelta(days=1)  # type: ignore[union-attr]


def label_rows(
    conn: duckdb.DuckDBPyConnection,
    photos: pl.DataFrame,
    events: pl.DataFrame,
    end: datetime | None,
) -> pl.DataFrame:
    """Likes in [posted_at, posted_at + 7 d); windows reaching past `end` are complete=false."""
    counts = run_sql(
        conn,
        LABELS_SQL,
        {
            "photos": epoch_micros(photos.select("photo_id", "posted_at"), "posted_at"),
            "events": epoch_micros(events.select("ts", "event", "photo_id"), "ts"),
        },
        {"label_window": micros(LABEL_WINDOW)},
    )
    window_end = pl.col("posted_at") + LABEL_WINDOW
    complete = (
        pl.lit(False) if end is None else window_end <= pl.lit(end).dt.replace_time_zone("UTC")
    )
    rows = (
        photos.select("photo_id", "posted_at")
        .join(counts, on="photo_id", how="left")
        .with_columns(window_end=window_end, complete=complete)
        .select("photo_id", "posted_at", "window_end", "likes_7d", "complete")
        .sort("photo_id")
    )
    return with_row_digest(rows, conn)


def split_of(photo_ids: pl.Series, conn: duckdb.DuckDBPyConnection | None = None) -> pl.Series:
    """train/val/test from a SHA-256 of the photo id: stable across runs, lakes and versions."""
    bucket = pl.col("bucket")
    name = pl.lit(SPLITS[-1][0])
    for split, bound in reversed(SPLITS[:-1]):
        name = pl.when(bucket < bound).then(pl.lit(split)).otherwise(name)
    return (
        hash_bucket(photo_ids, SPLIT_BUCKETS, conn)
        .to_frame("bucket")
        .select(name.cast(pl.String).alias("split"))["split"]
    )


def required_features(features: pl.DataFrame) -> list[str]:
    """The features a training row must have: all of them, except before the first
    classifier is trained (day 0: no photo has its outputs), when the rows go on without
    the classifier's columns and the popularity model trains without them."""
    if features.select(pl.any_horizontal(pl.col(CLASSIFIER_COLUMNS).is_not_null()).any()).item():
        return NUMERIC_FEATURES
    return [name for name in NUMERIC_FEATURES if name not in CLASSIFIER_COLUMNS]


def training_rows(
    conn: duckdb.DuckDBPyConnection, features: pl.DataFrame, labels: pl.DataFrame
) -> pl.DataFrame:
    """Features of photos with a complete label window and every feature present.

    The input versions go in each commit (`input_versions`), not in each row: a row
    changes only when its own photo's features or label do."""
    joined = (
        features.drop("row_sha256")
        .join(
            labels.filter(pl.col("complete")).select("photo_id", "likes_7d"),
            on="photo_id",
            how="inner",
        )
        .drop_nulls(required_features(features))
        .sort("photo_id")
    )
    return with_row_digest(joined.with_columns(split_of(joined["photo_id"], conn)), conn)


# events a bucket of the recount pairs with its authors' posts: at 100k photos and 8.1M
# logins and likes, 500k buckets peaked +465 MiB over the recount's start, 250k +258 MiB
# (1.06 -> 1.15 s), 125k +162 MiB (1.53 s)
ORACLE_EVENTS_PER_BUCKET = 250_000


def author_pairs(posts: pl.DataFrame, kind: pl.DataFrame, buckets: int) -> Iterator[pl.DataFrame]:
    """Each post joined with every event of its author, one bucket of authors at a time
    (each bucket's events filtered when it comes: partitioning them all at once held a
    second copy of every event)."""
    for (bucket,), mine in (
        posts.with_columns(bucket=pl.col("user_id") % buckets)
        .partition_by("bucket", as_dict=True, include_key=False)
        .items()
    ):
        theirs = kind.filter(pl.col("user_id") % buckets == bucket)
        if theirs.height:
            yield mine.join(theirs, on="user_id")


def activity_oracle(
    photos: pl.DataFrame, events: pl.DataFrame, events_per_bucket: int = ORACLE_EVENTS_PER_BUCKET
) -> pl.DataFrame:
    """Independent recount in polars, with the latest contributing event time per photo.

    The leakage check compares this with photo_features: equal counts and every
    contributing event strictly before posted_at.
    """
    logins = events.filter(pl.col("event") == "login").select("user_id", "ts")
    likes = events.filter(pl.col("event") == "like").select("photo_id", "ts")
    return oracle_counts(photos, logins, likes, events_per_bucket)


def oracle_counts(
    photos: pl.DataFrame,
    logins: pl.DataFrame,
    likes: pl.DataFrame,
    events_per_bucket: int = ORACLE_EVENTS_PER_BUCKET,
) -> pl.DataFrame:
    """`activity_oracle` from the only events it counts: logins (user_id, ts) and likes
    (photo_id, ts), as `activity_counts` takes them."""
    posts = photos.select("photo_id", "user_id", "posted_at")
    authors = photos.select("photo_id", author="user_id")
    received = likes.join(authors, on="photo_id").select(user_id="author", ts="ts")

    # every (post, event of its author) pair is formed: by buckets of authors, so that
    # memory holds one bucket's pairs (10M events x 100k photos in one join took 10 GB)
    buckets = max(1, -(-(logins.height + likes.height) // events_per_bucket))

    def window(kind: pl.DataFrame, width: timedelta, name: str) -> pl.DataFrame:
        counted = [
            pairs.filter(
                (pl.col("ts") >= pl.col("posted_at") - width) & (pl.col("ts") < pl.col("posted_at"))
            )
            .group_by("photo_id")
            .agg(pl.len().cast(pl.Int64).alias(name), pl.col("ts").max().alias(f"{name}_last_ts"))
            for pairs in author_pairs(posts, kind, buckets)
        ]
        return (
            pl.concat(counted)
            if counted
            else pl.DataFrame(
                schema={"photo_id": pl.Int64, name: pl.Int64, f"{name}_last_ts": kind.schema["ts"]}
            )
        )

    return (
        posts.join(window(logins, LOGIN_WINDOW, "author_logins_24h"), on="photo_id", how="left")
        .join(window(received, RECEIVED_LIKES_WINDOW, "author_likes_7d"), on="photo_id", how="left")
        .with_columns(pl.col("author_logins_24h", "author_likes_7d").fill_null(0))
        .sort("photo_id")
    )

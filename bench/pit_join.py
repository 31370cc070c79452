"""Point-in-time author activity: our DuckDB range join vs a polars `join_asof` peer.

The peer is what one writes without SQL (pandas is not a dependency, so polars
stands in for pandas `merge_asof`): per user, a cumulative count of events sorted
by time, looked up with two strict backward as-of joins (before posted_at and
before the window start); the count in the window is their difference. Both
must give identical counts; the script prints the time ratio.

    .venv/bin/python -m bench.pit_join [--events 1000000] [--photos 100000] [--users 20000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import polars as pl

from lakehouse.features.logic import (
    LOGIN_WINDOW,
    RECEIVED_LIKES_WINDOW,
    UTC_TS,
    author_activity,
)

EVENT_KINDS = np.array(["login", "view", "like"])
START = datetime(2026, 10, 1, tzinfo=UTC)
SPAN_US = 30 * 86_400 * 1_000_000


def generated(events: int, photos: int, users: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Photos and events over 30 days; times in whole seconds so window edges are hit."""
    rng = np.random.default_rng(seed)
    start_us = int(START.timestamp() * 1_000_000)

    def times(n: int) -> pl.Series:
        return pl.Series(start_us + rng.integers(0, SPAN_US // 1_000_000, n) * 1_000_000).cast(
            UTC_TS
        )

    photo_rows = pl.DataFrame(
        {
            "photo_id": np.arange(1, photos + 1),
            "user_id": rng.integers(1, users + 1, photos),
            "posted_at": times(photos),
        }
    )
    kinds = EVENT_KINDS[rng.choice(3, events, p=[0.4, 0.35, 0.25])]
    event_rows = pl.DataFrame(
        {
            "ts": times(events),
            "user_id": rng.integers(1, users + 1, events),
            "event": kinds,
            "photo_id": rng.integers(1, photos + 1, events),
        }
    ).with_columns(photo_id=pl.when(pl.col("event") != "login").then(pl.col("photo_id")))
    return photo_rows, event_rows


def windowed_counts(posts: pl.DataFrame, hits: pl.DataFrame, name: str) -> pl.DataFrame:
    """Events of the same user in [window_start, posted_at), by two as-of lookups."""
    ranked = hits.sort("user_id", "ts").with_columns(
        seen=pl.int_range(1, pl.len() + 1).over("user_id")
    )

    def seen_before(column: str) -> pl.Series:
        probe = posts.select("photo_id", "user_id", t=pl.col(column)).sort("t")
        found = probe.join_asof(
            ranked.sort("ts"),
            left_on="t",
            right_on="ts",
            by="user_id",
            strategy="backward",
            allow_exact_matches=False,
        )
        return found.sort("photo_id")["seen"].fill_null(0)

    until = seen_before("posted_at")
    since = seen_before("window_start")
    return pl.DataFrame({"photo_id": posts["photo_id"].sort(), name: (until - since)})


def polars_asof(photos: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """The peer: cumulative counts and strict backward as-of joins."""
    logins = events.filter(pl.col("event") == "login").select("user_id", "ts")
    received = (
        events.filter(pl.col("event") == "like")
        .join(photos.select("photo_id", author="user_id"), on="photo_id")
        .select(user_id="author", ts="ts")
    )
    counts = windowed_counts(
        photos.with_columns(window_start=pl.col("posted_at") - LOGIN_WINDOW),
        logins,
        "author_logins_24h",
    ).join(
        windowed_counts(
            photos.with_columns(window_start=pl.col("posted_at") - RECEIVED_LIKES_WINDOW),
            received,
            "author_likes_7d",
        ),
        on="photo_id",
    )
    return counts.with_columns(pl.col("author_logins_24h", "author_likes_7d").cast(pl.Int64))


def best_of(runs: int, work: Callable[[], pl.DataFrame]) -> tuple[float, pl.DataFrame]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return min(times), result  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    photos, events = generated(args.events, args.photos, args.users, args.seed)
    ours_s, ours = best_of(args.runs, lambda: author_activity(photos, events))
    peer_s, peer = best_of(args.runs, lambda: polars_asof(photos, events))
    assert ours.sort("photo_id").equals(peer.sort("photo_id")), "results differ"
    print(
        f"{args.events:,} events, {args.photos:,} photos, {args.users:,} users "
        f"(best of {args.runs}): ours (DuckDB range join) {ours_s:.3f} s, "
        f"peer (polars join_asof + cumulative counts) {peer_s:.3f} s; "
        f"identical results; ratio peer/ours = {peer_s / ours_s:.2f}x"
    )


if __name__ == "__main__":
    main()

"""Point-in-time author activity through Feast's offline store, run in Feast's own venv.

    .venv-feast/bin/python bench/feast_peer.py WORKDIR LOGIN_WINDOW_US LIKES_WINDOW_US [RUNS]

Feast 0.67 pins other versions of our libraries, so it lives in a separate venv
(`make feast-venv`) and this script imports only Feast, pandas and pyarrow.
WORKDIR holds photos.parquet (photo_id, user_id, posted_at) and events.parquet
(ts, user_id, event, photo_id); it gets features.parquet (photo_id,
author_logins_24h, author_likes_7d) of the photos Feast answered for,
dropped.parquet (photo_id) of those it dropped, and seconds.txt.

What a Feast user writes for "events of the author in [posted_at - w,
posted_at)": a feature view per event kind holding each author's running count
at each event time, and `get_historical_features` at the window's two ends.
Feast's as-of join takes rows at or before the entity timestamp, so the ends
are moved one microsecond earlier to make them strict (log times are whole
seconds). The running counts, their Parquet source and `apply` are set up
first, untimed; the timed part is the lookup alone, run RUNS times on the
warm store (the best counts, as for every other engine).

Feast drops entity rows that share (join keys, event timestamp): two photos by
one author posted in the same second become one row. Those photos are listed
in dropped.parquet, so the caller reports them as Feast's error and compares
counts on the rest.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig, ValueType
from feast.types import Int64

ONE_US = pd.Timedelta(microseconds=1)
KINDS = ("login", "like")


def running_counts(hits: pd.DataFrame) -> pd.DataFrame:
    """Per author and event time: how many of their events happened up to that time."""
    per_time = hits.groupby(["user_id", "ts"], sort=True).size().rename("n").reset_index()
    per_time["seen"] = per_time.groupby("user_id")["n"].cumsum().astype("int64")
    return per_time.drop(columns="n")


def feature_views(work: Path, counts: dict[str, pd.DataFrame]) -> tuple[Entity, list[FeatureView]]:
    author = Entity(name="author", join_keys=["user_id"], value_type=ValueType.INT64)
    views = []
    for kind, frame in counts.items():
        path = work / f"{kind}_counts.parquet"
        frame.to_parquet(path, index=False)
        views.append(
            FeatureView(
                name=f"{kind}_counts",
                entities=[author],
                ttl=timedelta(days=3650),
                schema=[Field(name="seen", dtype=Int64)],
                source=FileSource(path=str(path), timestamp_field="ts"),
            )
        )
    return author, views


def seen_in_window(
    store: FeatureStore, photos: pd.DataFrame, kind: str, width: pd.Timedelta
) -> tuple[pd.Series, set[int]]:
    """Per photo_id: the author's `kind` events in [posted_at - width, posted_at), as the
    difference of two as-of lookups of the running count. One call per feature view:
    Feast 0.67's file store drops an entity row that one of the views has no value for,
    and here no value means a count of 0. Also the photo_ids Feast returned no row for."""
    probes = pd.concat(
        [
            photos[["photo_id", "user_id"]].assign(
                end=end, event_timestamp=photos["posted_at"] - before - ONE_US
            )
            for end, before in (("until", pd.Timedelta(0)), ("since", width))
        ],
        ignore_index=True,
    )
    found = store.get_historical_features(
        entity_df=probes, features=[f"{kind}_counts:seen"], full_feature_names=True
    ).to_df()
    dropped = set(photos["photo_id"]) - set(found["photo_id"])
    seen = (
        found.pivot_table(
            index="photo_id", columns="end", values=f"{kind}_counts__seen", aggfunc="first"
        )
        .reindex(index=photos["photo_id"].unique(), columns=["until", "since"])
        .fillna(0)
    )
    return seen["until"] - seen["since"], dropped


def prepared_store(work: Path, photos: pd.DataFrame, events: pd.DataFrame) -> FeatureStore:
    """The feature store a Feast user has before asking: running counts as Parquet
    sources, their feature views applied."""
    received = events[events["event"] == "like"][["photo_id", "ts"]].merge(
        photos[["photo_id", "user_id"]], on="photo_id"
    )
    hits = {"login": events[events["event"] == "login"][["user_id", "ts"]], "like": received}
    author, views = feature_views(work, {k: running_counts(h) for k, h in hits.items()})
    store = FeatureStore(
        config=RepoConfig(
            project="bench",
            registry=str(work / "registry.db"),
            provider="local",
            offline_store={"type": "file"},
            online_store={"type": "sqlite", "path": str(work / "online.db")},
            entity_key_serialization_version=3,
            repo_path=str(work),
        )
    )
    store.apply([author, *views])
    return store


def author_activity(
    store: FeatureStore, photos: pd.DataFrame, windows: dict[str, pd.Timedelta]
) -> tuple[pd.DataFrame, set[int]]:
    """Feast's answer: per photo, the author's logins in 24 h and likes received in 7 d;
    and the photos it dropped (their rows are left out of the answer)."""
    ids = photos["photo_id"].sort_values()
    counts, dropped = {}, set()
    for kind in KINDS:
        seen, lost = seen_in_window(store, photos, kind, windows[kind])
        counts[kind], dropped = seen.reindex(ids), dropped | lost
    features = pd.DataFrame(
        {
            "photo_id": ids.to_numpy(),
            "author_logins_24h": counts["login"].to_numpy().astype("int64"),
            "author_likes_7d": counts["like"].to_numpy().astype("int64"),
        }
    )
    return features[~features["photo_id"].isin(dropped)].sort_values("photo_id"), dropped


def main() -> int:
    work, login_us, likes_us = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    runs = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    photos = pd.read_parquet(work / "photos.parquet")
    events = pd.read_parquet(work / "events.parquet")
    windows = {
        "login": pd.Timedelta(microseconds=login_us),
        "like": pd.Timedelta(microseconds=likes_us),
    }
    store = prepared_store(work, photos, events)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        features, dropped = author_activity(store, photos, windows)
        best = min(best, time.perf_counter() - start)
    features.to_parquet(work / "features.parquet", index=False)
    pd.DataFrame({"photo_id": sorted(dropped)}, dtype="int64").to_parquet(
        work / "dropped.parquet", index=False
    )
    (work / "seconds.txt").write_text(f"{best}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Point-in-time features, labels, the versioned training set and the popularity model."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa
from deltalake import write_deltalake

from lakehouse.access import training
from lakehouse.access.query import table_diff
from lakehouse.curated.logic import hourly_activity
from lakehouse.features.checks import COUNTED
from lakehouse.features.logic import (
    NUMERIC_FEATURES,
    UTC_TS,
    activity_oracle,
    author_activity,
    label_rows,
    split_of,
    training_rows,
)
from lakehouse.lake import LakeResource
from lakehouse.lake.digests import hash_bucket, with_row_digest
from lakehouse.lake.ledger import DAYS_PER_COMMIT
from lakehouse.lake.sql import connection
from lakehouse.lake.tables import TABLES
from lakehouse.models.assets import is_held_out
from lakehouse_tests.conftest import (
    DEMO_FIRST,
    DEMO_LAST,
    FEATURE_ASSETS,
    RAW_LAYER,
    DemoLake,
    Lakehouse,
    materializations,
)
from lakehouse_tests.delta_counts import (
    NOTHING,
    commits_since,
    counted,
    left_unchanged,
    versions,
    written,
    written_since,
)

pytestmark = pytest.mark.features

T0 = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)
FIRST, LAST = DEMO_FIRST, DEMO_LAST
PHOTO_COLUMNS = ("photo_id", "user_id", "posted_at")


def copy_of(built: DemoLake, tmp_path: Path) -> Lakehouse:
    """Private sources and the pre-feature lake, for tests that change things."""
    shutil.copytree(built.lakehouse.sources, tmp_path / "sources")
    shutil.copytree(built.upstream, tmp_path / "lake")
    return Lakehouse(sources=tmp_path / "sources", lake=tmp_path / "lake")


def frame(rows: list[dict], **schema: pl.DataType) -> pl.DataFrame:
    return pl.DataFrame(rows, schema_overrides=schema)


@pytest.fixture
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    """A plain DuckDB with the lake's settings, as the `duckdb` resource gives assets."""
    with connection() as conn:
        yield conn


def photos_frame(rows: list[tuple[int, int, datetime]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema=dict(zip(PHOTO_COLUMNS, (pl.Int64, pl.Int64, UTC_TS), strict=True)),
        orient="row",
    )


def events_frame(rows: list[tuple[datetime, int, str, int | None]]) -> pl.DataFrame:
    schema = {"ts": UTC_TS, "user_id": pl.Int64, "event": pl.String, "photo_id": pl.Int64}
    return pl.DataFrame(rows, schema=schema, orient="row")


# --- pure functions at the edges ---------------------------------------------------

# Computed with the per-row hashlib code these buckets replaced: a photo never changes
# side, so a model's held-out photos and a training_set's splits stay comparable.
KNOWN_SPLITS = {
    0: "train",
    1: "val",
    3: "test",
    8: "test",
    42: "val",
    99: "train",
    987654321: "val",
    2**62: "train",
}
KNOWN_HELD_OUT = {0: True, 1: True, 2: False, 3: False, 42: False, 987654321: True, 2**62: False}


def test_split_and_held_out_side_of_a_photo_are_pinned_to_its_id() -> None:
    ids = pl.Series("photo_id", list(KNOWN_SPLITS), dtype=pl.Int64)
    assert dict(zip(ids, split_of(ids), strict=True)) == KNOWN_SPLITS
    ids = pl.Series("photo_id", list(KNOWN_HELD_OUT), dtype=pl.Int64)
    assert dict(zip(ids, is_held_out(ids), strict=True)) == KNOWN_HELD_OUT
    many = pl.Series("photo_id", range(-500, 500), dtype=pl.Int64)
    expected = [int(hashlib.sha256(str(i).encode()).hexdigest(), 16) % 20 for i in many]
    assert hash_bucket(many, 20).to_list() == expected


def test_row_digest_covers_every_value_but_not_the_column_order() -> None:
    rows = pl.DataFrame({"a": [1, 1, None], "b": ["x", "", ""], "keys": [["k"], ["k"], ["k"]]})
    digests = with_row_digest(rows)["row_sha256"]
    assert digests.n_unique() == 3, "a changed value, and null against a value, change it"
    assert with_row_digest(rows.select("keys", "b", "a"))["row_sha256"].equals(digests)
    text = "\x1f".join(["1", "x", '{"keys":["k"]}'])
    assert digests[0] == hashlib.sha256(text.encode()).hexdigest()
    again = with_row_digest(with_row_digest(rows))
    assert again["row_sha256"].equals(digests), "an old digest is never digested"


def test_activity_windows_are_half_open_before_posting(duck: duckdb.DuckDBPyConnection) -> None:
    photos = photos_frame([(1, 7, T0), (2, 7, T0 - timedelta(days=3))])
    events = events_frame(
        [
            (T0, 7, "login", None),  # at posted_at: excluded
            (T0 - timedelta(hours=24), 7, "login", None),  # at the window start: included
            (T0 - timedelta(hours=24, microseconds=1), 7, "login", None),  # just before: out
            (T0 - timedelta(microseconds=1), 7, "login", None),  # just before posting: in
            (T0 - timedelta(days=7), 9, "like", 2),  # like on the author's photo 2: in
            (T0, 9, "like", 2),  # at posted_at: excluded
            (T0 - timedelta(days=1), 9, "like", 99),  # a photo of someone unknown: out
        ]
    )
    found = author_activity(duck, photos, events).row(0, named=True)
    assert found == {"photo_id": 1, "author_logins_24h": 2, "author_likes_7d": 1}


def test_label_window_excludes_its_end_and_censors_past_the_logs(
    duck: duckdb.DuckDBPyConnection,
) -> None:
    photos = photos_frame([(1, 7, T0), (2, 7, T0 + timedelta(days=2))])
    events = events_frame(
        [
            (T0, 9, "like", 1),  # at posted_at: included
            (T0 + timedelta(days=7, microseconds=-1), 9, "like", 1),  # last instant: included
            (T0 + timedelta(days=7), 9, "like", 1),  # at posted_at + 7 d: excluded
            (T0 - timedelta(seconds=1), 9, "like", 1),  # before posting: excluded
            (T0 + timedelta(hours=1), 9, "view", 1),  # a view is no like
        ]
    )
    end = datetime(2026, 10, 13)  # the logs end at midnight after 2026-10-12
    labels = label_rows(duck, photos, events, end)
    assert labels.select("photo_id", "likes_7d", "complete").rows() == [
        (1, 2, True),
        (2, 0, False),
    ]


def test_censored_labels_never_reach_the_training_set(duck: duckdb.DuckDBPyConnection) -> None:
    photos = photos_frame([(1, 7, T0), (2, 7, T0 + timedelta(days=2))])
    labels = label_rows(duck, photos, events_frame([]), datetime(2026, 10, 13))
    features = photos.with_columns(
        *(pl.lit(1.0).alias(c) for c in NUMERIC_FEATURES), row_sha256=pl.lit("x")
    )
    rows = training_rows(duck, features, labels)
    assert rows["photo_id"].to_list() == [1]


def test_hourly_activity_counts_per_user_and_utc_hour() -> None:
    events = events_frame(
        [
            (T0, 1, "login", None),
            (T0 + timedelta(minutes=59), 1, "view", 3),
            (T0 + timedelta(minutes=60), 1, "like", 3),
        ]
    ).with_columns(day=pl.lit("2026-10-05"))
    rows = hourly_activity(events).select("user_id", "hour", "logins", "views", "likes").rows()
    assert rows == [(1, T0, 1, 1, 0), (1, T0 + timedelta(hours=1), 0, 0, 1)]


@pytest.mark.speed
def test_hourly_activity_a_day_at_a_time_is_one_grouping_of_all_days() -> None:
    """Grouped day by day (bounded memory), the rows are those of one grouping of every
    day, sorted by (day, user, hour); a log day may hold events of another UTC date."""
    rng = np.random.default_rng(3)
    n = 5_000
    events = pl.DataFrame(
        {
            "ts": [T0 + timedelta(minutes=int(m)) for m in rng.integers(-90, 4 * 1440, n)],
            "user_id": rng.integers(1, 40, n),
            "event": rng.choice(["login", "view", "like"], n),
            "day": rng.choice(["2026-10-05", "2026-10-06", "2026-10-07"], n),
        }
    )
    once = (
        events.group_by("day", "user_id", pl.col("ts").dt.truncate("1h").alias("hour"))
        .agg(
            logins=(pl.col("event") == "login").sum().cast(pl.Int64),
            views=(pl.col("event") == "view").sum().cast(pl.Int64),
            likes=(pl.col("event") == "like").sum().cast(pl.Int64),
        )
        .sort("day", "user_id", "hour")
    )
    found = hourly_activity(events)
    assert found.equals(once.select(found.columns))
    assert found["day"].n_unique() == 3 and found.height > 1_000


def brute_force(photos: list[tuple], events: list[tuple]) -> list[tuple[int, int, int]]:
    """The definition, row by row: the oracle for the set-wise SQL."""
    author = {photo_id: user for photo_id, user, _ in photos}
    out = []
    for photo_id, user, posted in photos:
        logins = sum(
            1
            for ts, who, kind, _ in events
            if kind == "login" and who == user and posted - timedelta(hours=24) <= ts < posted
        )
        likes = sum(
            1
            for ts, _, kind, target in events
            if kind == "like"
            and author.get(target) == user
            and posted - timedelta(days=7) <= ts < posted
        )
        out.append((photo_id, logins, likes))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_activity_matches_a_brute_force_oracle(seed: int, duck: duckdb.DuckDBPyConnection) -> None:
    rng = random.Random(seed)
    hour = timedelta(hours=1)  # whole hours, so events often sit exactly on a window edge
    photos = [(i, rng.randint(1, 4), T0 + rng.randint(0, 240) * hour) for i in range(1, 41)]
    events = [
        (
            T0 + rng.randint(-200, 260) * hour,
            rng.randint(1, 6),
            rng.choice(["login", "view", "like"]),
            rng.randint(1, 45),
        )
        for _ in range(800)
    ]
    events = [(ts, u, e, None if e == "login" else p) for ts, u, e, p in events]
    found = author_activity(duck, photos_frame(photos), events_frame(events)).rows()
    assert found == brute_force(photos, events)
    # the leakage check's recount agrees, however many author buckets it joins in
    for per_bucket in (len(events), 100, 7):
        oracle = activity_oracle(photos_frame(photos), events_frame(events), per_bucket)
        assert oracle.select("photo_id", *COUNTED).sort("photo_id").rows() == found


# --- through Dagster ---------------------------------------------------------------


def test_feature_assets_materialize_with_checks_passing(built: DemoLake) -> None:
    lake = built.lakehouse.lake_resource
    photos = lake.read("raw_photos")
    features = lake.read("photo_features")
    assert sorted(features["photo_id"]) == sorted(photos["photo_id"])
    unclassified = built.found["photo_features"]["photos_without_classes"]
    assert features["content_p_circle"].null_count() == unclassified < 5
    evaluations = built.result.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} >= {
        "photo_features_no_leakage",
        "photo_features_unique",
        "training_set_labels_complete",
    }
    assert all(e.passed for e in evaluations), [e.check_name for e in evaluations if not e.passed]
    labels = lake.read("popularity_labels")
    assert 0 < labels["complete"].sum() < labels.height  # the last week is censored
    training_rows_ = lake.read("training_set")
    assert set(training_rows_["split"]) == {"train", "val", "test"}
    assert lake.read("user_activity")["day"].n_unique() == 20
    # 20 days in chunks of DAYS_PER_COMMIT (8), so memory holds 8 days: from the Delta log,
    # each commit adds exactly the rows of the next 8 days (8, 8, 4) and rewrites nothing
    activity = lake.read("user_activity", columns=["day"])
    days = sorted(activity["day"].unique().to_list())
    chunks = [days[i : i + DAYS_PER_COMMIT] for i in range(0, len(days), DAYS_PER_COMMIT)]
    commits = commits_since(lake, "user_activity", None)
    assert [c["operation"] for c in commits] == ["WRITE", "MERGE", "MERGE"]
    assert [len(chunk) for chunk in chunks] == [8, 8, 4]
    for i, (commit, chunk) in enumerate(zip(commits, chunks, strict=True)):
        held = lake.read("user_activity", columns=["day"], version=commit["version"])
        assert sorted(held["day"].unique().to_list()) == days[: i * DAYS_PER_COMMIT + len(chunk)]
        in_chunk = activity.filter(pl.col("day").is_in(chunk)).height
        count = counted(commit)
        assert (count.inserted, count.updated, count.deleted) == (in_chunk, 0, 0), commit


def test_model_beats_both_baselines(built: DemoLake) -> None:
    metrics = built.found["popularity_model"]
    assert metrics["val_mae"] < metrics["baseline_mean_mae"]
    assert metrics["val_mae"] < metrics["no_classifier_mae"]
    assert metrics["val_spearman"] > 0.3
    weights = built.lakehouse.lake_resource.get_object(metrics["weights_key"])
    assert metrics["weights"] == (built.lakehouse.lake / metrics["weights_key"]).resolve().as_uri()
    assert metrics["weights_key"].endswith(hashlib.sha256(weights).hexdigest())


def test_rerun_without_change_computes_nothing_and_commits_nothing(
    built: DemoLake, tmp_path: Path
) -> None:
    """On a copy of the whole demo lake: the session's lake is read by other tests."""
    shutil.copytree(built.lakehouse.sources, tmp_path / "sources")
    shutil.copytree(built.lakehouse.lake, tmp_path / "lake")
    copy = Lakehouse(sources=tmp_path / "sources", lake=tmp_path / "lake")
    before = versions(copy.lake_resource)
    again = materializations(copy.materialize(FIRST, LAST, select=FEATURE_ASSETS))
    assert versions(copy.lake_resource) == before
    assert written_since(copy.lake_resource, before) == dict.fromkeys(before, NOTHING)
    for name in FEATURE_ASSETS:
        assert again[name]["data_version"] == built.found[name]["data_version"], name


def test_same_sources_give_the_same_training_set_in_a_fresh_lake(
    built: DemoLake, tmp_path: Path
) -> None:
    fresh = copy_of(built, tmp_path)
    fresh.materialize(FIRST, LAST, select=FEATURE_ASSETS)
    ours = built.lakehouse.lake_resource.read("training_set", version=0).sort("photo_id")
    theirs = fresh.lake_resource.read("training_set").sort("photo_id")
    assert theirs.equals(ours)
    assert theirs.write_csv() == ours.write_csv()


def test_load_returns_an_old_version_after_sources_change(built: DemoLake, tmp_path: Path) -> None:
    lakehouse = copy_of(built, tmp_path)
    lakehouse.materialize(FIRST, LAST, select=FEATURE_ASSETS)
    lake = lakehouse.lake_resource
    version = lake.version("training_set")
    before = training.load(version=version, split=None, as_polars=True, lake=lake)
    dataset = training.load(version=version, lake=str(lakehouse.lake))
    assert len(dataset) == before.filter(pl.col("split") == "train").height
    features, label = dataset[0]
    assert features.shape == (len(NUMERIC_FEATURES),) and label.ndim == 0

    gone = before["photo_id"].head(10).to_list()
    engine = sa.create_engine(lakehouse.db_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM photos WHERE photo_id IN ({','.join(map(str, gone))})"))
    engine.dispose()
    inputs_before = lake.commit_metadata("training_set", version)["input_versions"]
    lakehouse.materialize(FIRST, LAST, select={"raw_photos", *FEATURE_ASSETS})

    assert lake.version("training_set") > version
    latest = training.load(split=None, as_polars=True, lake=lake)
    assert not set(gone) & set(latest["photo_id"])
    assert training.load(version=version, split=None, as_polars=True, lake=lake).equals(before)
    # each version's commit records its inputs; rows are rewritten only where they changed
    inputs = {name: lake.version(name) for name in ("photo_features", "popularity_labels")}
    assert json.loads(lake.commit_metadata("training_set")["input_versions"]) == inputs
    assert json.loads(inputs_before) != inputs
    # Delta's commit metrics show exactly the rows that differ between the two versions
    old, new = (_rows_by_photo(lake, v) for v in (version, lake.version("training_set")))
    differ = sum(1 for photo in old.keys() & new.keys() if old[photo] != new[photo])
    commits = written(lake, "training_set", version)
    expected = (1, len(new.keys() - old.keys()), differ, len(old.keys() - new.keys()))
    assert (commits.commits, commits.inserted, commits.updated, commits.deleted) == expected
    assert 0 < commits.rows < before.height // 2
    # the natural-key diff of a derived table finds those same rows, and only them
    diff = table_diff("training_set", version, lake.version("training_set"), lake=str(lake.root))
    assert {(change, photo) for change, photo in diff.select("change", "photo_id").fetchall()} == {
        *(("added", photo) for photo in new.keys() - old.keys()),
        *(("removed", photo) for photo in old.keys() - new.keys()),
        *(("changed", p) for p in old.keys() & new.keys() if old[p] != new[p]),
    }


def test_every_natural_key_is_unique_in_every_table_of_the_demo_lake(built: DemoLake) -> None:
    """Raw and derived tables alike (test_query checks a raw-only lake)."""
    lake = built.lakehouse.lake_resource
    keys = {name: lake.read(name, columns=list(TABLES[name].key)) for name in lake.table_names()}
    derived = ("images", "augmented_tensors", "photo_features", "training_set", "photo_classes")
    assert all(keys[name].height > 0 for name in derived), "the derived tables hold rows"
    assert {name: rows.is_duplicated().sum() for name, rows in keys.items()} == dict.fromkeys(
        keys, 0
    )


def test_every_commit_of_every_table_names_the_dagster_run_and_asset_that_wrote_it(
    built: DemoLake,
) -> None:
    """Raw and derived tables, every version, compactions included (test_query shows the
    `lakehouse history` command on one table)."""
    lake = built.lakehouse.lake_resource
    runs = {run.run_id for run in built.lakehouse.instance.get_runs()}
    commits = [(name, c) for name in lake.table_names() for c in commits_since(lake, name, None)]
    assert len(commits) > len(lake.table_names()) > 15, "every table, several versions"
    unnamed = {
        (name, commit["version"], commit.get("dagster_run_id"), commit.get("dagster_asset"))
        for name, commit in commits
        if commit.get("dagster_run_id") not in runs or not commit.get("dagster_asset")
    }
    assert unnamed == set()


def _rows_by_photo(lake: LakeResource, version: int) -> dict[int, dict]:
    """A training-set version's rows by photo, every column compared but the row digest."""
    rows = lake.read("training_set", version=version).drop("row_sha256")
    return {row["photo_id"]: row for row in rows.iter_rows(named=True)}


def test_a_failing_blocking_check_stops_the_training_set(built: DemoLake, tmp_path: Path) -> None:
    lakehouse = copy_of(built, tmp_path)
    lake = lakehouse.lake_resource
    photos = lake.read("raw_photos")
    write_deltalake(lake.table_uri("raw_photos"), photos.head(1).to_arrow(), mode="append")
    result = lakehouse.materialize(
        FIRST,
        LAST,
        select={"photo_features", "popularity_labels", "training_set"},
        raise_on_error=False,
    )
    failed = {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}
    assert "photo_features_unique" in failed
    done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "training_set" not in done
    assert lake.version("training_set") is None


@pytest.fixture
def built(demo_lake: DemoLake) -> Iterator[DemoLake]:
    """The session's demo lake, read only: a test that changes things uses copy_of()."""
    with left_unchanged(demo_lake.lakehouse.lake_resource, "the session's demo lake"):
        yield demo_lake


def test_a_rewritten_log_day_recomputes_only_that_days_activity(lakehouse: Lakehouse) -> None:
    """user_activity knows a day is unchanged from raw_events' ledger (the sha256 of the log
    file its events came from), without reading the events; a changed file redoes that day."""
    select, day = RAW_LAYER | {"user_activity"}, "2026-10-03"
    lake = lakehouse.lake_resource
    assert (
        materializations(lakehouse.materialize(select=select))["user_activity"]["days_recomputed"]
        == 6
    )
    before = lake.read("user_activity")
    log = lakehouse.sources / "logs" / f"{day}.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[: len(lines) // 2]))  # half of the day's events are gone

    changed = materializations(lakehouse.materialize(select=select))["user_activity"]
    unchanged = materializations(lakehouse.materialize(select=select))["user_activity"]

    assert (changed["days_recomputed"], unchanged["days_recomputed"]) == (1, 0)
    after = lake.read("user_activity")
    order = ["day", "user_id", "hour"]
    events = lake.read("raw_events").filter(pl.col("day") == day)
    assert after.filter(pl.col("day") == day).sort(order).equals(hourly_activity(events))
    assert (
        after.filter(pl.col("day") == day)["logins"].sum()
        < before.filter(pl.col("day") == day)["logins"].sum()
    )
    others = pl.col("day") != day
    assert after.filter(others).sort(order).equals(before.filter(others).sort(order))

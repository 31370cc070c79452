"""Content-based rematerialization, end to end, on real Delta tables."""

from __future__ import annotations

import shutil

import polars as pl
import pytest
from PIL import Image

from lakehouse_tests.conftest import EVERYTHING, Lakehouse, materializations
from lakehouse_tests.delta_counts import NOTHING, versions, written_since

pytestmark = pytest.mark.foundation

DERIVED = ("raw_objects", "raw_users", "raw_photos", "raw_photo_labels", "raw_events")


def test_second_run_computes_nothing_and_commits_nothing(lakehouse: Lakehouse) -> None:
    lakehouse.observe()
    first = materializations(lakehouse.materialize(select=EVERYTHING))
    lake = lakehouse.lake_resource
    assert all(written_since(lake, {})[name].inserted > 0 for name in DERIVED)
    before = versions(lake)

    lakehouse.observe()
    second = materializations(lakehouse.materialize(select=EVERYTHING))

    assert len(second) == 17, "every asset of the graph ran"
    assert written_since(lake, before) == dict.fromkeys(before, NOTHING)
    assert versions(lake) == before
    assert {n: second[n]["data_version"] for n in second} == {
        n: first[n]["data_version"] for n in first
    }


def test_one_changed_photo_recomputes_exactly_its_rows(lakehouse: Lakehouse) -> None:
    lakehouse.materialize()
    lake = lakehouse.lake_resource
    before = lake.read("raw_objects")
    tables = versions(lake)
    key = before.filter(pl.col("media_type") == "image/png")["key"][0]
    with Image.open(lakehouse.sources / key) as image:
        image.rotate(90).save(lakehouse.sources / key)

    lakehouse.materialize()

    # Delta's own commit metrics: the key's cached hash replaced, the new object inserted,
    # its old version marked replaced, and no other table written
    changed = {name: w for name, w in written_since(lake, tables).items() if w != NOTHING}
    assert {name: (w.inserted, w.updated, w.deleted) for name, w in changed.items()} == {
        "_object_hashes": (0, 1, 0),
        "raw_objects": (1, 1, 0),
    }
    after = lake.read("raw_objects")
    assert after.height == before.height + 1
    same_key = after.filter(pl.col("key") == key).sort("first_seen")
    assert same_key["status"].to_list() == ["replaced", "current"]
    assert same_key["last_seen"][0] is not None and same_key["last_seen"][1] is None
    untouched = after.filter(pl.col("key") != key).drop("last_seen")
    assert untouched.sort("key").equals(
        before.filter(pl.col("key") != key).drop("last_seen").sort("key")
    )


def test_adding_one_log_day_processes_only_that_partition(lakehouse: Lakehouse) -> None:
    last = lakehouse.sources / "logs" / "2026-10-06.jsonl"
    held_back = last.read_bytes()
    last.unlink()
    lakehouse.materialize(last="2026-10-05")
    lake = lakehouse.lake_resource
    before = lake.row_count("raw_events")
    tables = versions(lake)

    last.write_bytes(held_back)
    result = materializations(lakehouse.materialize(first="2026-10-06", last="2026-10-06"))

    assert result["raw_events"]["days_parsed"] == 1
    quarantined = _quarantined_lines(lakehouse, "2026-10-06")
    new_rows = len(held_back.splitlines()) - quarantined
    changed = {name: w for name, w in written_since(lake, tables).items() if w != NOTHING}
    assert {name: (w.inserted, w.updated, w.deleted) for name, w in changed.items()} == {
        "_object_hashes": (1, 0, 0),  # the new log file, hashed once
        "_ingested_files": (1, 0, 0),  # raw_events' ledger: that file, that day
        "raw_events": (new_rows, 0, 0),
        **({"quarantine": (quarantined, 0, 0)} if quarantined else {}),
    }
    assert lake.row_count("raw_events") == before + new_rows
    days = lakehouse.lake_resource.read("raw_events", columns=["day"])["day"].unique().sort()
    assert days.to_list() == [f"2026-10-0{d}" for d in range(1, 7)]


def test_fresh_lake_gives_the_same_data_versions(lakehouse: Lakehouse, tmp_path) -> None:
    lakehouse.observe()
    first = materializations(lakehouse.materialize(select=EVERYTHING))
    observed_first = _observed_versions(lakehouse)

    other = Lakehouse(sources=lakehouse.sources, lake=tmp_path / "second-lake")
    other.observe()
    second = materializations(other.materialize(select=EVERYTHING))

    assert {n: v["data_version"] for n, v in second.items()} == {
        n: v["data_version"] for n, v in first.items()
    }
    assert _observed_versions(other) == observed_first
    for name in DERIVED:
        assert lakehouse.lake_resource.row_count(name) == other.lake_resource.row_count(name)


def test_deleted_object_is_marked_deleted_not_forgotten(lakehouse: Lakehouse) -> None:
    lakehouse.materialize()
    registry = lakehouse.lake_resource.read("raw_objects")
    key = registry["key"][3]
    (lakehouse.sources / key).unlink()

    lakehouse.materialize()

    rows = lakehouse.lake_resource.read("raw_objects").filter(pl.col("key") == key)
    assert rows["status"].to_list() == ["deleted"]
    assert rows["last_seen"][0] is not None
    photo = lakehouse.lake_resource.read("raw_photos").filter(pl.col("object_key") == key)
    assert photo.is_empty(), "a photo whose object is gone leaves raw_photos"
    reasons = lakehouse.lake_resource.read("quarantine").filter(pl.col("detail").str.contains(key))
    assert "object missing from the store" in reasons["reason"].to_list()


def test_observation_versions_follow_content_not_timestamps(lakehouse: Lakehouse) -> None:
    lakehouse.observe()
    first = _observed_versions(lakehouse)
    photo = next((lakehouse.sources / "photos").rglob("*.png"))
    photo.write_bytes(photo.read_bytes())  # same bytes, new mtime: re-hashed, same version
    lakehouse.observe()
    assert _observed_versions(lakehouse) == first

    shutil.copy(photo, photo.with_name("copy-of-" + photo.name))
    lakehouse.observe()
    changed = _observed_versions(lakehouse)
    assert changed["photo_objects"] != first["photo_objects"]
    assert changed["metadata_db"] == first["metadata_db"]


def test_a_log_day_is_observed_again_only_when_its_file_changed(lakehouse: Lakehouse) -> None:
    """Each day file's first observation carries its SHA-256; a look that finds a day's file
    unchanged writes no observation of that day (its last one stands for it)."""
    import hashlib

    from dagster import AssetKey

    def observations() -> dict[str, list[str]]:
        records = lakehouse.instance.fetch_observations(AssetKey("activity_logs"), limit=10_000)
        found: dict[str, list[str]] = {}
        for record in reversed(records.records):
            observation = record.asset_observation
            found.setdefault(observation.partition, []).append(observation.data_version)
        return found

    lakehouse.observe()
    first = observations()
    files = sorted((lakehouse.sources / "logs").glob("*.jsonl"))
    assert sorted(first) == [path.stem for path in files]
    assert all(len(seen) == 1 for seen in first.values())
    lakehouse.observe()
    assert observations() == first, "nothing changed: no day observed again"

    changed = files[1]
    changed.write_bytes(changed.read_bytes() + b"not json\n")
    lakehouse.observe()
    after = observations()
    assert after[changed.stem] == [
        *first[changed.stem],
        hashlib.sha256(changed.read_bytes()).hexdigest(),
    ]
    assert {day: seen for day, seen in after.items() if day != changed.stem} == {
        day: seen for day, seen in first.items() if day != changed.stem
    }


def _observed_versions(lakehouse: Lakehouse) -> dict[str, str]:
    from dagster import AssetKey

    versions = {}
    for name in ("photo_objects", "metadata_db"):
        record = lakehouse.instance.get_latest_data_version_record(AssetKey(name), is_source=True)
        versions[name] = record.asset_observation.data_version
    return versions


def _quarantined_lines(lakehouse: Lakehouse, day: str) -> int:
    quarantine = lakehouse.lake_resource.read("quarantine")
    return quarantine.filter(pl.col("key") == f"logs/{day}.jsonl").height


def test_regenerating_the_same_world_changes_no_table(lakehouse: Lakehouse) -> None:
    """What a second `make demo` does: demo-data again, observe, materialize."""
    from lakehouse.demo.world import generate_world
    from lakehouse_tests.conftest import WORLD

    lakehouse.observe()
    lakehouse.materialize()
    before = versions(lakehouse.lake_resource)
    mtimes = {p: p.stat().st_mtime_ns for p in (lakehouse.sources / "photos").rglob("*")}

    generate_world(lakehouse.sources, lakehouse.db_url, **WORLD)
    lakehouse.observe()
    lakehouse.materialize()

    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert versions(lakehouse.lake_resource) == before
    assert written_since(lakehouse.lake_resource, before) == dict.fromkeys(before, NOTHING)

"""Schema changes: a source that gains a column or widens a type flows into the Delta
schema without losing a value; one that drops a required column, or changes a type in
a way that would lose values, fails before anything is written."""

from __future__ import annotations

import sqlite3

import polars as pl
import pytest

from lakehouse import failpoints
from lakehouse.lake import LakeResource, SchemaConflict
from lakehouse_tests.conftest import Lakehouse

pytestmark = pytest.mark.reliability

INFO = {"dagster_run_id": "test"}


def alter(lakehouse: Lakehouse, *statements: str) -> None:
    with sqlite3.connect(lakehouse.sources / "metadata.db") as db:
        for statement in statements:
            db.execute(statement)


def test_a_new_source_column_is_merged_into_the_raw_table(lakehouse: Lakehouse) -> None:
    lakehouse.materialize()
    lake = lakehouse.lake_resource
    before = lake.read("raw_photos").sort("photo_id")  # type: ignore[union-attr]
    alter(
        lakehouse,
        "ALTER TABLE photos ADD COLUMN camera TEXT",
        "UPDATE photos SET camera = 'cam-' || photo_id",
    )

    lakehouse.materialize(select={"raw_photos"})
    after = lake.read("raw_photos").sort("photo_id")  # type: ignore[union-attr]
    assert after["camera"].to_list() == [f"cam-{i}" for i in after["photo_id"]]
    assert after.drop("camera", "row_sha256").equals(before.drop("row_sha256"))
    assert "camera" in [field.name for field in lake.open("raw_photos").schema().fields]


def test_a_widened_source_type_is_merged_without_losing_a_value(lakehouse: Lakehouse) -> None:
    alter(lakehouse, "ALTER TABLE photos ADD COLUMN rating INTEGER", "UPDATE photos SET rating = 3")
    lakehouse.materialize()
    lake = lakehouse.lake_resource
    assert lake.read("raw_photos")["rating"].dtype == pl.Int64  # type: ignore[index]
    alter(lakehouse, "UPDATE photos SET rating = photo_id + 0.5")  # integers become reals

    lakehouse.materialize(select={"raw_photos"})
    rows = lake.read("raw_photos")
    assert rows["rating"].dtype == pl.Float64  # type: ignore[index]
    assert (rows["rating"] == rows["photo_id"] + 0.5).all()  # type: ignore[index]


def test_a_lake_column_widens_int32_to_int64_to_double_without_loss(tmp_path) -> None:
    """deltalake alone would refuse (int64 values do not fit the int32 column) or, for
    int -> float, cast the new values down unchecked (5.5 stored as 5)."""
    lake = LakeResource(root=str(tmp_path))
    lake.upsert(
        "t", pl.DataFrame({"k": [1], "v": pl.Series([7], dtype=pl.Int32)}), ["k"], commit_info=INFO
    )
    lake.upsert("t", pl.DataFrame({"k": [2], "v": [2**40]}), ["k"], commit_info=INFO)
    lake.upsert("t", pl.DataFrame({"k": [3], "v": [5.5]}), ["k"], commit_info=INFO)
    rows = lake.read("t").sort("k")  # type: ignore[union-attr]
    assert rows["v"].to_list() == [7.0, 2.0**40, 5.5]


def test_rows_committed_while_a_column_widens_are_kept(tmp_path) -> None:
    """Widening rewrites the table: rows another writer commits between the read and
    the rewrite must survive it."""
    lake = LakeResource(root=str(tmp_path))
    other = LakeResource(root=str(tmp_path))
    lake.upsert(
        "t", pl.DataFrame({"k": [1], "v": pl.Series([7], dtype=pl.Int32)}), ["k"], commit_info=INFO
    )
    meanwhile = pl.DataFrame({"k": [2], "v": pl.Series([8], dtype=pl.Int32)})
    with failpoints.on("widen/t", lambda: other.upsert("t", meanwhile, ["k"], commit_info=INFO)):
        lake.upsert("t", pl.DataFrame({"k": [3], "v": [2**40]}), ["k"], commit_info=INFO)
    rows = lake.read("t").sort("k")  # type: ignore[union-attr]
    assert rows["k"].to_list() == [1, 2, 3]
    assert rows["v"].to_list() == [7, 8, 2**40]
    # the Delta log: the other writer's merge landed between the widening's read (version
    # 0) and its rewrite, which the merge of the new row followed
    history = sorted(lake.open("t").history(), key=lambda c: c["version"])  # type: ignore[union-attr]
    assert [(c["version"], c["operation"], c.get("widened")) for c in history] == [
        (0, "WRITE", None),
        (1, "MERGE", None),
        (2, "WRITE", "v"),
        (3, "MERGE", None),
    ]


def test_a_type_change_that_would_lose_values_fails_before_writing(tmp_path) -> None:
    lake = LakeResource(root=str(tmp_path))
    lake.upsert("t", pl.DataFrame({"k": [1], "v": [1.5]}), ["k"], commit_info=INFO)
    version = lake.version("t")
    with pytest.raises(SchemaConflict, match="'v'.*nothing was written"):
        lake.upsert("t", pl.DataFrame({"k": [2], "v": ["text"]}), ["k"], commit_info=INFO)
    assert lake.version("t") == version
    assert lake.read("t")["v"].to_list() == [1.5]  # type: ignore[index]


def test_a_dropped_required_column_fails_before_writing(lakehouse: Lakehouse) -> None:
    lakehouse.materialize()
    versions = lakehouse.table_versions()
    alter(lakehouse, "ALTER TABLE photos DROP COLUMN posted_at")

    result = lakehouse.materialize(raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "raw_photos"
    assert not [e for e in result.all_events if e.is_step_up_for_retry], "not retried"
    error = failure.event_specific_data.error
    assert "SourceSchemaError" in error.message and "['posted_at']" in error.message
    assert lakehouse.table_versions() == versions, "nothing written, not even quarantine"

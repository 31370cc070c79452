"""The raw layer: faithful copies, every bad input quarantined with its reason, idempotent."""

from __future__ import annotations

import polars as pl
import pytest
import sqlalchemy as sa

from lakehouse.lake.ledger import LEDGER_TABLE
from lakehouse_tests.conftest import WORLD, Lakehouse, materializations
from lakehouse_tests.delta_counts import versions, written

pytestmark = pytest.mark.foundation


def active_quarantine(lakehouse: Lakehouse) -> pl.DataFrame:
    rows = lakehouse.lake_resource.read("quarantine")
    return rows.filter(pl.col("resolved_at").is_null())


def source_rows(lakehouse: Lakehouse, table: str) -> int:
    engine = sa.create_engine(lakehouse.db_url)
    with engine.connect() as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_raw_tables_hold_the_sources(lakehouse: Lakehouse) -> None:
    lakehouse.materialize()
    lake = lakehouse.lake_resource
    assert lake.row_count("raw_users") == WORLD["users"]
    # good photos, less the duplicated id (both rows quarantined), plus the truncated JPEG,
    # whose header is fine: decoding it is the curated layer's job
    assert lake.row_count("raw_photos") == WORLD["photos"] - 1 + 1
    objects = lake.read("raw_objects")
    assert set(objects["media_type"]) == {"image/jpeg", "image/png"}
    assert objects.filter(pl.col("width") <= 0).is_empty()
    events = lake.read("raw_events")
    assert events["event_id"].is_unique().all()
    assert events["ts"].dtype == pl.Datetime("us", "UTC")
    assert sorted(events["day"].unique()) == [f"2026-10-0{d}" for d in range(1, 7)]


def test_every_bad_input_is_quarantined_with_its_reason(lakehouse: Lakehouse) -> None:
    lakehouse.materialize()
    reasons = active_quarantine(lakehouse).select("source", "reason", "key", "line")
    by_source = {
        source: group["reason"].to_list()
        for (source,), group in reasons.group_by("source", maintain_order=True)
    }
    objects = " | ".join(by_source["photo_objects"])
    assert "empty object" in objects and "not an image" in objects
    photos = " | ".join(by_source["metadata_db.photos"])
    for reason in (
        "unknown user_id",
        "object missing from the store",
        "latitude out of range",
        "duplicate photo_id",
        "object quarantined: empty object",
        "object quarantined: not an image",
    ):
        assert reason in photos, reason
    logs = reasons.filter(pl.col("source") == "activity_logs")
    assert logs["line"].null_count() == 0, "log rejects carry their line number"
    log_reasons = " | ".join(logs["reason"])
    assert "not JSON" in log_reasons
    assert "missing field user_id" in log_reasons
    assert "unknown event type 'share'" in log_reasons


def test_inputs_reconcile_accepted_plus_quarantined(lakehouse: Lakehouse) -> None:
    result = lakehouse.materialize()
    checks = {
        evaluation.check_name: evaluation.passed
        for evaluation in result.get_asset_check_evaluations()
    }
    assert checks == {
        "raw_objects_reconcile": True,
        "raw_photos_reconcile": True,
        "raw_events_reconcile": True,
    }
    quarantine = active_quarantine(lakehouse)
    photos_in = source_rows(lakehouse, "photos")
    accepted = lakehouse.lake_resource.row_count("raw_photos")
    assert (
        photos_in == accepted + quarantine.filter(pl.col("source") == "metadata_db.photos").height
    )
    lines_in = sum(
        len(path.read_bytes().splitlines()) for path in (lakehouse.sources / "logs").iterdir()
    )
    events = lakehouse.lake_resource.row_count("raw_events")
    assert lines_in == events + quarantine.filter(pl.col("source") == "activity_logs").height
    objects_in = sum(1 for path in (lakehouse.sources / "photos").rglob("*") if path.is_file())
    current = lakehouse.lake_resource.read("raw_objects").filter(pl.col("status") == "current")
    assert (
        objects_in == current.height + quarantine.filter(pl.col("source") == "photo_objects").height
    )
    # each check counted what the test counted itself (a check that counted nothing on
    # both sides would pass too)
    counted = {
        evaluation.check_name: {k: v.value for k, v in evaluation.metadata.items()}
        for evaluation in result.get_asset_check_evaluations()
    }
    assert counted["raw_photos_reconcile"]["source"] == photos_in > 0
    assert counted["raw_photos_reconcile"]["accepted"] == accepted
    assert counted["raw_objects_reconcile"]["source"] == objects_in > 0
    assert counted["raw_objects_reconcile"]["accepted"] == current.height
    assert counted["raw_events_reconcile"]["source"] == lines_in > 0


def test_fixed_input_resolves_its_quarantine_row(lakehouse: Lakehouse) -> None:
    lakehouse.materialize()
    engine = sa.create_engine(lakehouse.db_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE photos SET latitude = 45.0 WHERE latitude > 90"))
    lakehouse.materialize()
    rows = lakehouse.lake_resource.read("quarantine").filter(
        pl.col("reason").str.contains("latitude")
    )
    assert rows.height == 1 and rows["resolved_at"][0] is not None, "history is kept, resolved"
    assert lakehouse.lake_resource.row_count("raw_photos") == WORLD["photos"] + 1


def test_rerun_after_a_crash_between_commits_duplicates_nothing(lakehouse: Lakehouse) -> None:
    """Events were committed but the ledger was not (a crash in between): redo, no dupes."""
    lakehouse.materialize()
    lake = lakehouse.lake_resource
    events_before = lake.read("raw_events").sort("event_id")
    quarantine_before = lake.read("quarantine").sort("quarantine_id")
    table = lake.open(LEDGER_TABLE)
    table.delete("key = 'logs/2026-10-03.jsonl'")
    before = versions(lake)

    result = materializations(lakehouse.materialize(select={"raw_events"}))

    assert result["raw_events"]["days_parsed"] == 1
    # Delta's commit metrics: the day's partition replaced in one commit, no row added
    # or removed; the ledger gets its row back
    events = written(lake, "raw_events", before["raw_events"])
    assert (events.commits, events.inserted, events.deleted) == (1, 0, 0)
    assert written(lake, LEDGER_TABLE, before[LEDGER_TABLE]).inserted == 1
    assert lake.read("raw_events").sort("event_id").equals(events_before)
    assert lake.read("quarantine").sort("quarantine_id").equals(quarantine_before)


def test_upsert_twice_is_idempotent(lakehouse: Lakehouse) -> None:
    lake = lakehouse.lake_resource
    rows = pl.DataFrame({"id": [1, 2, 3], "value": ["a", "b", "c"]})
    lake.upsert("scratch", rows, key=["id"], commit_info={"test": "1"})
    lake.upsert("scratch", rows, key=["id"], commit_info={"test": "2"})
    assert lake.read("scratch").sort("id").equals(rows)
    history = lake.open("scratch").history()
    assert history[0]["test"] == "2" and history[0]["operation"] == "MERGE"

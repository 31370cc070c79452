"""Pure data logic of the raw layer: the log parser, the row validator, the object probe."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime

import polars as pl
import pytest
from PIL import Image

from lakehouse.raw.logs import parse_log_day
from lakehouse.raw.metadata import validate_photos
from lakehouse.raw.objects import probe_object

pytestmark = pytest.mark.foundation

DAY = date(2026, 10, 2)


def line(**fields: object) -> bytes:
    record = {"ts": "2026-10-02T10:00:00Z", "user_id": 1, "event": "like", "photo_id": 5}
    record.update(fields)
    return json.dumps({k: v for k, v in record.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"ts": "2026-10-0', "not JSON"),
        (line(user_id=...), "missing field user_id"),
        (line(event="share"), "unknown event type 'share'"),
        (line(user_id="7"), "user_id is not an integer"),
        (line(user_id=True), "user_id is not an integer"),
        (line(ts="2026-10-02T10:00:00"), "no time zone"),
        (line(ts="2031-01-01T00:00:00Z"), "far from the file's day"),
        (line(ts="1969-12-31T23:59:59Z"), "far from the file's day"),
        (line(ts=12), "ts is not a string"),
        (line(photo_id=None), "like event without photo_id"),
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (b"[1, 2]", "not a JSON object"),
        (b"   ", "empty line"),
        (b'{"x": "' + b"a" * (1 << 20) + b'"}', "line too long"),
    ],
)
def test_bad_lines_are_rejected_with_their_reason(raw: bytes, reason: str) -> None:
    parsed = parse_log_day(line() + b"\n" + raw + b"\n", "logs/2026-10-02.jsonl", DAY)
    assert parsed.events.height == 1
    (rejected,) = parsed.rejected
    assert reason in rejected["reason"]
    assert rejected["line"] == 2


def test_exact_duplicate_counts_once_and_is_recorded() -> None:
    parsed = parse_log_day(line() + b"\n" + line() + b"\n", "k", DAY)
    assert parsed.events.height == 1
    assert parsed.rejected[0]["reason"] == "duplicate of line 1"


def test_offsets_are_normalized_to_utc() -> None:
    parsed = parse_log_day(
        line(ts="2026-10-02T12:00:00+02:00", event="login", photo_id=None), "k", DAY
    )
    assert parsed.events["ts"][0] == datetime(2026, 10, 2, 10, tzinfo=UTC)
    assert parsed.events["photo_id"][0] is None


def photo_rows(**overrides: list) -> pl.DataFrame:
    rows = {
        "photo_id": [1, 2],
        "user_id": [10, 10],
        "object_key": ["photos/a.jpg", "photos/b.jpg"],
        "title": ["a", "b\x00c"],
        "posted_at": ["2026-10-01T10:00:00+00:00", "2026-10-01T11:00:00+00:00"],
        "latitude": [45.0, 46.0],
        "longitude": [7.0, 8.0],
        "location_name": ["x", "y"],
    }
    rows.update(overrides)
    return pl.DataFrame(rows)


OBJECTS = pl.DataFrame(
    {"key": ["photos/a.jpg", "photos/b.jpg"], "problem": [None, None]},
    schema={"key": pl.String, "problem": pl.String},
)


def test_valid_photos_are_typed_and_nul_bytes_quarantined() -> None:
    checked = validate_photos(photo_rows(), pl.Series([10]), OBJECTS)
    assert checked.accepted["photo_id"].to_list() == [1]
    assert checked.accepted["posted_at"].dtype == pl.Datetime("us", "UTC")
    assert checked.rejected["reason"].to_list() == ["NUL byte in title"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"user_id": [10, 99]}, "unknown user_id"),
        ({"latitude": [45.0, 123.4]}, "latitude out of range"),
        ({"longitude": [7.0, -181.0]}, "longitude out of range"),
        ({"object_key": ["photos/a.jpg", "photos/zzz.jpg"]}, "object missing from the store"),
        ({"posted_at": ["2026-10-01T10:00:00+00:00", "yesterday"]}, "invalid posted_at"),
        ({"posted_at": ["2026-10-01T10:00:00+00:00", None]}, "missing posted_at"),
    ],
)
def test_bad_photo_rows_are_rejected(overrides: dict, reason: str) -> None:
    checked = validate_photos(photo_rows(**overrides), pl.Series([10]), OBJECTS)
    assert checked.accepted["photo_id"].to_list() == [1]
    assert reason in checked.rejected["reason"][0]
    assert checked.rejected["key"][0] == "photo_id=2"


def test_duplicate_ids_reject_every_copy() -> None:
    checked = validate_photos(photo_rows(photo_id=[1, 1]), pl.Series([10]), OBJECTS)
    assert checked.accepted.is_empty()
    assert checked.rejected.height == 2


def test_the_validator_refuses_rows_without_a_required_column() -> None:
    """The refusal itself; that nothing reaches the lake is shown on a real lake by
    test_schema_changes.py::test_a_dropped_required_column_fails_before_writing."""
    with pytest.raises(ValueError, match="lacks required column.*posted_at"):
        validate_photos(photo_rows().drop("posted_at"), pl.Series([10]), OBJECTS)


def image_bytes(fmt: str, size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format=fmt)
    return buffer.getvalue()


def test_probe_trusts_bytes_not_extensions() -> None:
    assert probe_object(image_bytes("PNG")).media_type == "image/png"
    jpeg = probe_object(image_bytes("JPEG"))
    assert (jpeg.media_type, jpeg.width, jpeg.height) == ("image/jpeg", 8, 6)
    assert "empty object" in probe_object(b"").reason
    assert "not an image" in probe_object(b"<html><body>hi</body></html>").reason
    assert "unsupported image format GIF" in probe_object(image_bytes("GIF")).reason

"""Hostile input through the real raw layer: each ends in quarantine with a reason, in the
lake unchanged, or in a clear error; never lost, never silently changed, never written
outside the lake root. Every case tried is listed in the test log (lakehouse_tests.hostile).
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from PIL import Image

from lakehouse.lake import LakeResource
from lakehouse.lake.rejections import DETAIL_LIMIT
from lakehouse.raw.metadata import validate_photos
from lakehouse.resources import ObjectStoreResource
from lakehouse.resources.keys import UnsafeKeyError, checked_key
from lakehouse_tests.conftest import Lakehouse
from lakehouse_tests.hostile import record
from lakehouse_tests.test_images_decode import encoded, handmade_png, noisy_photo
from lakehouse_tests.test_postgres_source import postgres_lakehouse

pytestmark = pytest.mark.reliability

DAY = "2026-10-03"
LOG_KEY = f"logs/{DAY}.jsonl"
TEN_MB = 10 << 20


def active_quarantine(lakehouse: Lakehouse, source: str) -> pl.DataFrame:
    rows = lakehouse.lake_resource.read("quarantine")
    return rows.filter((pl.col("source") == source) & pl.col("resolved_at").is_null())


def event_line(**fields: object) -> bytes:
    """A valid login line of user 1 on DAY, with `fields` changed (`...` drops a field)."""
    line = {"ts": f"{DAY}T05:00:00Z", "user_id": 1, "event": "login", "photo_id": None}
    line.update(fields)
    return json.dumps({k: v for k, v in line.items() if v is not ...}).encode()


VALID = event_line(ts=f"{DAY}T05:06:07Z")
# (case, the line, a reason it must be quarantined with; None: it must become an event)
HOSTILE_LINES: list[tuple[str, bytes, str | None]] = [
    ("valid line (the original)", VALID, None),
    ("exact duplicate line", VALID, "duplicate of line"),
    (
        "same event, other key order, spacing and +00:00",
        b'{"photo_id":null,"event":"login","user_id":1,"ts":"'
        + DAY.encode()
        + b'T05:06:07+00:00"}',
        "duplicate of line",
    ),
    ("valid, +02:00 offset", event_line(ts=f"{DAY}T09:00:00+02:00", user_id=2), None),
    ("not JSON", b'{"ts": "2026-10-03T01:00:00Z", "user_id": 1,', "not JSON"),
    ("not UTF-8", event_line()[:-1] + b', "note": "\xff\xfe"}', "not UTF-8"),
    ("10 MB long", event_line(pad="a" * TEN_MB), "line too long"),
    ("missing field user_id", event_line(user_id=...), "missing field user_id"),
    ("missing field ts", event_line(ts=...), "missing field ts"),
    ("wrong type: user_id a string", event_line(user_id="7"), "user_id is not an integer"),
    ("wrong type: user_id true", event_line(user_id=True), "user_id is not an integer"),
    ("wrong type: photo_id 1.5", event_line(photo_id=1.5), "photo_id is not an integer"),
    ("wrong type: ts a number", event_line(ts=1_790_000_000), "ts is not a string"),
    ("wrong type: event a list", event_line(event=["login"]), "unknown event type"),
    ("NaN user_id", event_line(user_id=math.nan), "user_id is not an integer"),
    ("unknown event", event_line(event="share"), "unknown event type 'share'"),
    ("like without photo", event_line(event="like"), "like event without photo_id"),
    ("ts without zone", event_line(ts=f"{DAY}T05:00:00"), "ts has no time zone"),
    ("ts far in the future", event_line(ts="2999-01-01T00:00:00Z"), "far from the file's day"),
    ("ts before 1970", event_line(ts="1969-12-31T23:59:59Z"), "far from the file's day"),
    ("ts year 1 at +14:00", event_line(ts="0001-01-01T00:00:00+14:00"), "out of range"),
    ("ts not ISO 8601", event_line(ts="yesterday"), "ts is not ISO 8601"),
    ("user_id 2**64", event_line(user_id=2**64), "user_id out of range"),
    ("an integer of 5000 digits", event_line()[:-1] + b', "x": ' + b"9" * 5000 + b"}", "not JSON"),
    ("JSON nested 100000 deep", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ("a JSON array, not an object", b"[1, 2]", "not a JSON object"),
    ("field given twice", event_line()[:-1] + b', "event": "view"}', "given more than once"),
    ("blank line", b"   ", "empty line"),
    ("NUL byte inside the event", event_line(event="login\x00"), "unknown event type"),
]


def test_hostile_log_lines_end_as_events_or_in_quarantine(lakehouse: Lakehouse) -> None:
    path = lakehouse.sources / LOG_KEY
    original = path.read_bytes().splitlines()
    path.write_bytes(b"\n".join([*original, *(line for _, line, _ in HOSTILE_LINES)]) + b"\n")

    lakehouse.materialize()

    events = lakehouse.lake_resource.read("raw_events").filter(pl.col("day") == DAY)
    quarantined = active_quarantine(lakehouse, "activity_logs").filter(pl.col("key") == LOG_KEY)
    assert len(original) + len(HOSTILE_LINES) == events.height + quarantined.height
    by_line = {row["line"]: row for row in quarantined.iter_rows(named=True)}
    event_by_line = {row["line"]: row for row in events.iter_rows(named=True)}
    for number, (case, line, reason) in enumerate(HOSTILE_LINES, start=len(original) + 1):
        if reason is None:
            event = event_by_line[number]
            sent = json.loads(line)
            assert event["ts"] == datetime.fromisoformat(sent["ts"]).astimezone(UTC), case
            assert (event["user_id"], event["event"]) == (sent["user_id"], sent["event"]), case
            record("log line", case, f"event on line {number}, unchanged")
            continue
        rejected = by_line[number]
        assert reason in rejected["reason"], (case, rejected["reason"])
        assert len(rejected["reason"]) < 200 and len(rejected["detail"]) <= DETAIL_LIMIT, case
        record("log line", case, f"quarantined: {rejected['reason']}")
    duplicates = quarantined.filter(pl.col("reason").str.starts_with("duplicate of line"))
    assert set(duplicates["reason"]) == {f"duplicate of line {len(original) + 1}"}


@dataclass(frozen=True)
class Row:
    """A hostile photos row: the case, its values, and the reason it must be refused for
    (None: accepted unchanged). `location_name` carries a marker to find the row again."""

    case: str
    values: dict[str, object]
    reason: str | None
    sqlite_only: bool = False


ONE_MB_TITLE = "M" * (1 << 20)


def hostile_photo_rows(user_id: int, object_key: str) -> list[Row]:
    def row(case: str, reason: str | None, sqlite_only: bool = False, **changes: object) -> Row:
        number = 9000 + len(rows)
        values = {
            "photo_id": number,
            "user_id": user_id,
            "object_key": object_key,
            "title": f"title {number}",
            "posted_at": "2026-10-02T10:00:00+00:00",
            "latitude": 45.0,
            "longitude": 7.0,
            "location_name": f"marker-{number}",
        }
        return Row(case, {**values, **changes}, reason, sqlite_only)

    rows: list[Row] = []
    for args, changes in [
        (("null optional fields", None), {"title": None, "latitude": None, "longitude": None}),
        (("1 MB title", None), {"title": ONE_MB_TITLE}),
        (
            ("1 MB title and a dangling user", "unknown user_id"),
            {"title": ONE_MB_TITLE, "user_id": 10**9},
        ),
        (("null photo_id", "missing photo_id"), {"photo_id": None}),
        (("null user_id", "missing user_id"), {"user_id": None}),
        (("null posted_at", "missing posted_at"), {"posted_at": None}),
        (("dangling user_id", "unknown user_id (dangling reference)"), {"user_id": 10**9}),
        (("latitude 91", "latitude out of range"), {"latitude": 91.0}),
        (("longitude -180.5", "longitude out of range"), {"longitude": -180.5}),
        (("latitude infinite", "latitude out of range"), {"latitude": math.inf}),
        (("posted_at not a time", "invalid posted_at", True), {"posted_at": "a while ago"}),
        (
            ("object key with ..", "object missing from the store"),
            {"object_key": "photos/../metadata.db"},
        ),
        (("NUL byte in the title", "NUL byte in title", True), {"title": "a\x00b"}),
        (("photo_id a word", "invalid photo_id", True), {"photo_id": "abc"}),
        (("photo_id 5.5", "invalid photo_id", True), {"photo_id": 5.5}),
        (("latitude a word", "invalid latitude", True), {"latitude": "north"}),
        (("title bytes, not UTF-8", "invalid title", True), {"title": b"\xff\xfe"}),
    ]:
        rows.append(row(*args, **changes))
    twin = row("duplicate photo_id (both copies)", "duplicate photo_id")
    rows += [twin, Row(twin.case, {**twin.values, "location_name": "marker-twin"}, twin.reason)]
    return rows


def plant_photo_rows(url: str, rows: list[Row]) -> None:
    columns = list(rows[0].values)
    insert = sa.text(
        f"INSERT INTO photos ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"
    )
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(insert, [row.values for row in rows])
    engine.dispose()


def a_good_photo(lakehouse: Lakehouse) -> tuple[int, str]:
    """(user_id, object_key) of a photo the raw layer accepts."""
    engine = sa.create_engine(lakehouse.db_url)
    with engine.connect() as connection:
        found = connection.execute(
            sa.text("SELECT user_id, object_key FROM photos WHERE photo_id = 1")
        ).one()
    engine.dispose()
    return found.user_id, found.object_key


def check_photo_rows(lakehouse: Lakehouse, rows: list[Row], database: str) -> None:
    result = lakehouse.materialize()
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["raw_photos_reconcile"], "rows in = accepted + quarantined"
    accepted = lakehouse.lake_resource.read("raw_photos")
    quarantined = active_quarantine(lakehouse, "metadata_db.photos")
    for row in rows:
        marker = row.values["location_name"]
        if row.reason is None:
            (kept,) = accepted.filter(pl.col("location_name") == marker).iter_rows(named=True)
            for column in ("photo_id", "user_id", "object_key", "title", "latitude", "longitude"):
                assert kept[column] == row.values[column], (row.case, column)
            record(f"photos row ({database})", row.case, "accepted unchanged")
            continue
        assert accepted.filter(pl.col("location_name") == marker).is_empty(), row.case
        found = quarantined.filter(pl.col("detail").str.contains(f'"{marker}"', literal=True))
        assert found.height == 1, (row.case, found)
        assert row.reason in found["reason"][0], (row.case, found["reason"][0])
        assert len(found["detail"][0]) <= DETAIL_LIMIT, row.case
        record(f"photos row ({database})", row.case, f"quarantined: {found['reason'][0]}")


def test_hostile_photo_rows_in_sqlite(lakehouse: Lakehouse) -> None:
    rows = hostile_photo_rows(*a_good_photo(lakehouse))
    plant_photo_rows(lakehouse.db_url, rows)
    check_photo_rows(lakehouse, rows, "SQLite")


def test_hostile_photo_rows_in_postgres(tmp_path: Path, postgres_db: str) -> None:
    lakehouse = postgres_lakehouse(postgres_db, tmp_path)
    rows = [row for row in hostile_photo_rows(*a_good_photo(lakehouse)) if not row.sqlite_only]
    plant_photo_rows(postgres_db, rows)
    check_photo_rows(lakehouse, rows, "Postgres")


def test_hostile_users_and_labels_in_sqlite(lakehouse: Lakehouse) -> None:
    engine = sa.create_engine(lakehouse.db_url)
    with engine.begin() as connection:
        labelled = connection.execute(sa.text("SELECT min(photo_id) FROM photo_labels")).scalar()
        connection.execute(
            sa.text("INSERT INTO users VALUES (:id, :created, :city)"),
            [
                {"id": 9001, "created": "not a time", "city": "x"},
                {"id": 9002, "created": "2026-01-01T00:00:00+00:00", "city": "Nul\x00city"},
                {"id": 9003, "created": None, "city": "y"},
            ],
        )
        connection.execute(
            sa.text("INSERT INTO photo_labels VALUES (:id, :content, :style, :at)"),
            [
                {"id": 10**9, "content": "circle", "style": "gray", "at": None},
                {"id": labelled, "content": None, "style": "gray", "at": None},
            ],
        )
    engine.dispose()
    lakehouse.materialize()
    users = active_quarantine(lakehouse, "metadata_db.users")
    expected_users = {
        "user_id=9001": ("created_at not a time", "invalid created_at"),
        "user_id=9002": ("NUL byte in home_city", "NUL byte in home_city"),
        "user_id=9003": ("null created_at", "missing created_at"),
    }
    for key, (case, reason) in expected_users.items():
        (found,) = users.filter(pl.col("key") == key)["reason"]
        assert reason in found, (case, found)
        record("users row (SQLite)", case, f"quarantined: {found}")
    labels = active_quarantine(lakehouse, "metadata_db.photo_labels")
    (unknown,) = labels.filter(pl.col("key") == f"photo_id={10**9}")["reason"]
    assert "label for an unknown photo" in unknown
    record("labels row (SQLite)", "label of an unknown photo", f"quarantined: {unknown}")
    # the labelled photo now has a second label, without content: both copies are refused
    twice = labels.filter(pl.col("key") == f"photo_id={labelled}")["reason"].sort()
    assert twice.len() == 2 and all("duplicate label for photo_id" in r for r in twice)
    assert "missing content_label" in twice[1]
    record("labels row (SQLite)", "second label, null content", f"quarantined: {twice[1]}")


# --- objects: bad images and hostile keys ---------------------------------------------

ImageBytes = Callable[[], bytes]
GOOD_PNG: ImageBytes = lambda: encoded(noisy_photo(1, (40, 30)), "PNG")  # noqa: E731
HOSTILE_OBJECTS: list[tuple[str, str, ImageBytes, str | None]] = [
    # (case, key, bytes, where it must end: None = images; else a quarantine reason)
    ("key with spaces", "photos/with some spaces.png", GOOD_PNG, None),
    ("unicode key", "photos/ünïcødé/写真 📷.png", GOOD_PNG, None),
    ("key with .. inside names", "photos/a..b/..hidden...png", GOOD_PNG, None),
    ("key with a newline", "photos/new\nline.png", GOOD_PNG, None),
    ("60 folders deep", "photos/" + "deep/" * 60 + "bottom.png", GOOD_PNG, None),
    ("PNG bytes named .jpg", "photos/misnamed.jpg", GOOD_PNG, None),
    ("GIF", "photos/anim.gif", lambda: encoded(Image.new("RGB", (4, 4)), "GIF"), "GIF"),
    ("empty file", "photos/empty.jpg", lambda: b"", "empty object"),
    ("HTML saved as .png", "photos/page.png", lambda: b"<html>404</html>", "not an image"),
    (
        "truncated JPEG",
        "photos/cut.jpg",
        lambda: encoded(noisy_photo(3, (200, 200)), "JPEG")[:3000],
        "truncated",
    ),
    (
        "20000x20000 PNG header (bomb)",
        "photos/bomb.png",
        lambda: handmade_png(20_000, 20_000, zlib.compress(b"")),
        "decompression bomb",
    ),
]


def files_outside(root: Path, lake: Path) -> dict[str, tuple[int, int]]:
    """Every file under `root` but not under `lake`, with its size and mtime."""
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if path.is_file() and not path.is_relative_to(lake)
    }


def test_bad_images_and_hostile_keys(lakehouse: Lakehouse, tmp_path: Path) -> None:
    for _, key, data, _ in HOSTILE_OBJECTS:
        target = lakehouse.sources / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data())
    before = files_outside(tmp_path, lakehouse.lake)

    lakehouse.materialize(select={"raw_objects", "images", "quarantine"})

    assert files_outside(tmp_path, lakehouse.lake) == before, "nothing written outside the lake"
    lake = lakehouse.lake_resource
    registered = set(lake.read("raw_objects").filter(pl.col("status") == "current")["key"])
    image_keys = set(lake.read("images")["keys"].explode())
    rejected = lake.read("quarantine").filter(pl.col("resolved_at").is_null())
    reasons = {key: reason for key, reason in rejected.select("key", "reason").iter_rows()}
    for case, key, _, reason in HOSTILE_OBJECTS:
        if reason is None:
            assert key in registered and key in image_keys, case
            record("object", case, "registered and decoded under its exact key")
        else:
            assert reason in reasons[key], (case, reasons.get(key))
            record("object", case, f"quarantined: {reasons[key]}")


def test_a_key_that_is_not_utf8_is_a_clear_error(lakehouse: Lakehouse) -> None:
    name = os.fsencode(lakehouse.sources / "photos") + b"/caf\xe9.png"
    Path(os.fsdecode(name)).write_bytes(GOOD_PNG())
    result = lakehouse.materialize(select={"raw_objects"}, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    message = (error.cause or error).message  # a ConfigError is the failure itself: no retry
    assert "object names must be UTF-8" in message and "caf\\xe9" in message
    record("object", "file name not UTF-8", f"clear error: {message.strip()[:60]}")


@pytest.mark.parametrize(
    "key", ["../escape", "objects/../../escape", "/etc/passwd", "a/\x00b", "", "x/../../y"]
)
def test_keys_reaching_outside_the_root_are_refused(tmp_path: Path, key: str) -> None:
    lake = LakeResource(root=str(tmp_path / "lake"))
    rows = pl.DataFrame({"id": [1]})
    for attempt in (
        lambda: lake.get_object(key),
        lambda: lake.has_object(key),
        lambda: lake.table_uri(key),
        lambda: lake.upsert(key, rows, ["id"], commit_info={}),
        lambda: ObjectStoreResource(uri=str(tmp_path)).read(key),
        lambda: checked_key("s3://bucket/lake", key),
    ):
        with pytest.raises(UnsafeKeyError, match="refused"):
            attempt()
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing created"
    record("lake key", repr(key), "refused: UnsafeKeyError")


def test_a_symlink_out_of_the_lake_is_not_followed_for_writes(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "lake").mkdir()
    (tmp_path / "lake" / "objects").symlink_to(outside)
    lake = LakeResource(root=str(tmp_path / "lake"))
    with pytest.raises(UnsafeKeyError, match="outside"):
        lake.put_object(b"model weights")
    with pytest.raises(UnsafeKeyError, match="outside"):
        lake.upsert("objects", pl.DataFrame({"id": [1]}), ["id"], commit_info={})
    assert list(outside.iterdir()) == []
    record("lake key", "objects/ symlinked outside the lake", "refused: UnsafeKeyError")


def test_a_symlink_out_of_the_source_store_is_not_followed_for_reads(tmp_path: Path) -> None:
    outside, store = tmp_path / "outside", tmp_path / "store"
    (outside / "photos").mkdir(parents=True)
    (outside / "photos" / "secret.jpg").write_bytes(b"not yours")
    (store / "photos").mkdir(parents=True)
    (store / "photos" / "mine.jpg").write_bytes(b"mine")
    (store / "photos" / "link.jpg").symlink_to(outside / "photos" / "secret.jpg")
    (store / "elsewhere").symlink_to(outside / "photos")
    (store / "photos" / "alias.jpg").symlink_to(store / "photos" / "mine.jpg")
    sources = ObjectStoreResource(uri=str(store))
    for key in ("photos/link.jpg", "elsewhere/secret.jpg"):
        for read in (sources.read, sources.sha256):
            with pytest.raises(UnsafeKeyError, match="outside"):
                read(key)
    assert sources.read("photos/alias.jpg") == b"mine", "a link that stays inside is read"
    assert [o.key for o in sources.list("")] == ["photos/mine.jpg"], "links are never listed"
    record("source key", "a file or folder symlinked outside the store", "refused on read")


def test_a_fractional_id_is_refused_not_truncated() -> None:
    """A REAL in an INTEGER column (SQLite allows it) must not become another photo's id."""
    photos = pl.DataFrame(
        {
            "photo_id": [1.0, 5.5],
            "user_id": [10, 10],
            "object_key": ["photos/a.jpg", "photos/a.jpg"],
            "title": ["a", "b"],
            "posted_at": ["2026-10-01T10:00:00+00:00"] * 2,
            "latitude": [1.0, 1.0],
            "longitude": [1.0, 1.0],
            "location_name": ["x", "y"],
        }
    )
    objects = pl.DataFrame({"key": ["photos/a.jpg"], "problem": [None]}).cast({"problem": str})
    checked = validate_photos(photos, pl.Series([10]), objects)
    assert checked.accepted["photo_id"].to_list() == [1]
    assert checked.rejected["reason"].to_list() == ["invalid photo_id"]
    record("photos row (frame)", "photo_id 5.5 in a REAL column", "quarantined: invalid photo_id")

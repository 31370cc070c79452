"""Property-based tests (hypothesis): the log parser, the row validator and the
point-in-time join, each against what it promises for every input, not a few examples.

Derandomized with a modest number of examples, so CI runs the same cases every time.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.features.logic import (
    LOGIN_WINDOW,
    author_activity,
    by_author_buckets,
    epoch_micros,
    events_before_posting,
    label_rows,
    micros,
    time_order,
)
from lakehouse.lake.sql import connection
from lakehouse.raw.logs import EARLY_SLACK, EVENT_TYPES, LATE_SLACK, parse_log_day
from lakehouse.raw.metadata import PHOTO_SCHEMA, validate_photos
from lakehouse_tests.test_features import brute_force, events_frame, photos_frame

pytestmark = pytest.mark.reliability

PROPERTY = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DAY = date(2026, 10, 3)
START = datetime(2026, 10, 3, tzinfo=UTC)
KEY = "logs/2026-10-03.jsonl"

# --- the log parser ------------------------------------------------------------------

offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
in_window = st.datetimes(
    min_value=(START - EARLY_SLACK).replace(tzinfo=None),
    max_value=(START + LATE_SLACK - timedelta(microseconds=1)).replace(tzinfo=None),
).map(lambda naive: naive.replace(tzinfo=UTC))
ids = st.integers(0, 2**63 - 1)


@st.composite
def events(draw: st.DrawFn) -> dict[str, object]:
    """A valid event as its fields: ts in the file's window, ids in range, photo when needed."""
    event = draw(st.sampled_from(EVENT_TYPES))
    photo = draw(ids) if event != "login" else draw(st.none() | ids)
    return {"ts": draw(in_window), "user_id": draw(ids), "event": event, "photo_id": photo}


@st.composite
def lines_of(draw: st.DrawFn, event: dict[str, object]) -> bytes:
    """One way to write `event` as a JSON line: any key order, spacing and UTC offset."""
    fields = dict(event, ts=event["ts"].astimezone(draw(offsets)).isoformat())  # type: ignore[union-attr]
    order = draw(st.permutations(list(fields)))
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " :  ")]))
    return json.dumps({k: fields[k] for k in order}, separators=separators).encode()


def as_tuples(frame: pl.DataFrame) -> list[tuple]:
    return frame.select("ts", "user_id", "event", "photo_id").rows()


def expected(event: dict[str, object]) -> tuple:
    return (event["ts"], event["user_id"], event["event"], event["photo_id"])


@PROPERTY
@given(st.data(), st.lists(events(), max_size=20, unique_by=expected))
def test_valid_lines_round_trip(data: st.DataObject, written: list[dict[str, object]]) -> None:
    lines = [data.draw(lines_of(event)) for event in written]
    parsed = parse_log_day(b"".join(line + b"\n" for line in lines), KEY, DAY)
    assert parsed.rejected == []
    assert as_tuples(parsed.events) == [expected(event) for event in written]
    assert parsed.events["line"].to_list() == list(range(1, len(written) + 1))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
near_valid = st.dictionaries(
    st.sampled_from(["ts", "user_id", "event", "photo_id", "extra"]),
    json_values | st.sampled_from([*EVENT_TYPES, "2026-10-03T10:00:00Z", "2026-10-03T10:00"]),
).map(lambda record: json.dumps(record).encode())
any_line = st.binary(max_size=200).map(lambda raw: raw.replace(b"\n", b" ")) | near_valid


@PROPERTY
@given(st.lists(any_line | st.just(b""), max_size=15))
def test_any_bytes_parse_or_are_rejected_with_a_reason(lines: list[bytes]) -> None:
    parsed = parse_log_day(b"".join(line + b"\n" for line in lines), KEY, DAY)
    assert parsed.events.height + len(parsed.rejected) == len(lines), "lines in = out"
    numbers = sorted([*parsed.events["line"], *(r["line"] for r in parsed.rejected)])
    assert numbers == list(range(1, len(lines) + 1)), "every line accounted for once"
    assert all(r["reason"] and r["sha256"] for r in parsed.rejected)
    assert parsed.events["event_id"].is_unique().all()


@PROPERTY
@given(st.data(), st.lists(events(), min_size=1, max_size=12, unique_by=expected))
def test_order_and_repetition_do_not_change_the_events(
    data: st.DataObject, written: list[dict[str, object]]
) -> None:
    once = parse_log_day(b"\n".join(data.draw(lines_of(e)) for e in written), KEY, DAY)
    repeated = data.draw(st.lists(st.sampled_from(written), max_size=12))
    shuffled = data.draw(st.permutations([*written, *repeated]))
    lines = [data.draw(lines_of(event)) for event in shuffled]
    again = parse_log_day(b"\n".join(lines), KEY, DAY)
    assert sorted(as_tuples(again.events)) == sorted(as_tuples(once.events))
    assert sorted(again.events["event_id"]) == sorted(once.events["event_id"])
    assert len(again.rejected) == len(repeated)
    assert all(r["reason"].startswith("duplicate of line") for r in again.rejected)


# --- the row validator ---------------------------------------------------------------

USERS = pl.Series("user_id", [1, 2, 3])
OBJECT_KEYS = ["photos/a.jpg", "photos/b c.png", "photos/ü/写真.jpg"]
OBJECTS = pl.DataFrame(
    {"key": [*OBJECT_KEYS, "photos/bad.jpg"], "problem": [None, None, None, "empty object"]}
)
text = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=40)
posted = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@st.composite
def photo_rows(draw: st.DrawFn) -> pl.DataFrame:
    """A valid `photos` table as SQLite gives it: ISO text times, unique ids."""
    photo_ids = draw(
        st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=8, unique=True)
    )
    n = len(photo_ids)
    column = lambda strategy: draw(st.lists(strategy, min_size=n, max_size=n))  # noqa: E731
    return pl.DataFrame(
        {
            "photo_id": photo_ids,
            "user_id": column(st.sampled_from(USERS.to_list())),
            "object_key": column(st.sampled_from(OBJECT_KEYS)),
            "title": column(st.none() | text),
            "posted_at": [t.isoformat() for t in column(posted)],
            "latitude": column(st.none() | st.floats(-90, 90)),
            "longitude": column(st.none() | st.floats(-180, 180)),
            "location_name": column(st.none() | text),
        },
        schema={**PHOTO_SCHEMA, "posted_at": pl.String},
    )


def typed(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.with_columns(pl.col("posted_at").str.to_datetime(time_zone="UTC", time_unit="us"))


@PROPERTY
@given(photo_rows())
def test_valid_rows_are_accepted_unchanged(rows: pl.DataFrame) -> None:
    checked = validate_photos(rows, USERS, OBJECTS)
    assert checked.rejected.is_empty()
    assert checked.accepted.drop("row_sha256").equals(typed(rows))


CORRUPTIONS: dict[str, tuple[dict[str, object], str]] = {
    # name: (values written into one row, the reason it must be rejected for)
    "null photo_id": ({"photo_id": None}, "missing photo_id"),
    "null user_id": ({"user_id": None}, "missing user_id"),
    "null object_key": ({"object_key": None}, "missing object_key"),
    "null posted_at": ({"posted_at": None}, "missing posted_at"),
    "posted_at not a time": ({"posted_at": "soon"}, "invalid posted_at"),
    "dangling user": ({"user_id": 99}, "unknown user_id"),
    "missing object": ({"object_key": "photos/gone.jpg"}, "object missing from the store"),
    "quarantined object": ({"object_key": "photos/bad.jpg"}, "object quarantined: empty object"),
    "latitude too big": ({"latitude": 90.5}, "latitude out of range"),
    "latitude NaN": ({"latitude": float("nan")}, "latitude out of range"),
    "longitude too small": ({"longitude": -1e300}, "longitude out of range"),
    "NUL in title": ({"title": "a\x00"}, "NUL byte in title"),
    "NUL in location": ({"location_name": "\x00"}, "NUL byte in location_name"),
}


@PROPERTY
@given(photo_rows(), st.sampled_from(sorted(CORRUPTIONS)), st.data())
def test_each_single_corruption_is_rejected_with_its_reason(
    rows: pl.DataFrame, corruption: str, data: st.DataObject
) -> None:
    changes, reason = CORRUPTIONS[corruption]
    at = data.draw(st.integers(0, rows.height - 1))
    broken = rows.with_columns(
        pl.when(pl.int_range(pl.len()) == at)
        .then(pl.lit(value, dtype=rows.schema[column]))
        .otherwise(pl.col(column))
        .alias(column)
        for column, value in changes.items()
    )
    checked = validate_photos(broken, USERS, OBJECTS)
    assert checked.rejected.height == 1
    assert reason in checked.rejected["reason"][0]
    kept = typed(rows.filter(pl.int_range(pl.len()) != at))
    assert checked.accepted.drop("row_sha256").equals(kept), "the others pass unchanged"


@PROPERTY
@given(photo_rows(), st.data())
def test_a_duplicated_id_rejects_every_copy(rows: pl.DataFrame, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, rows.height - 1))
    checked = validate_photos(pl.concat([rows, rows[at]]), USERS, OBJECTS)
    assert checked.rejected.height == 2
    assert set(checked.rejected["reason"]) == {"duplicate photo_id"}
    assert checked.accepted.height == rows.height - 1


# --- the point-in-time join ----------------------------------------------------------

T0 = datetime(2026, 10, 5, tzinfo=UTC)
# whole hours, often exactly on a window edge, and now and then a microsecond off one
moments = st.builds(
    lambda hours, nudge: T0 + timedelta(hours=hours, microseconds=nudge),
    st.integers(-200, 200),
    st.sampled_from([0, 0, 0, -1, 1]),
)
photos_st = st.lists(st.tuples(st.integers(1, 4), moments), min_size=1, max_size=12).map(
    lambda rows: [(i, user, at) for i, (user, at) in enumerate(rows, start=1)]
)
events_st = st.lists(
    st.tuples(moments, st.integers(1, 5), st.sampled_from(EVENT_TYPES), st.integers(1, 14)).map(
        lambda e: (e[0], e[1], e[2], None if e[2] == "login" else e[3])
    ),
    max_size=60,
)


@settings(PROPERTY, max_examples=30)
@given(photos_st, events_st)
def test_author_activity_matches_the_brute_force_oracle(photos: list, events: list) -> None:
    with connection() as conn:
        found = author_activity(conn, photos_frame(photos), events_frame(events)).rows()
    assert found == brute_force(photos, events)


WIDE = 2**50  # user ids this far apart leave no room for a packed (user, time) sort key


@settings(PROPERTY, max_examples=30)
@given(photos_st, events_st)
def test_author_activity_without_a_packed_sort_key_matches_the_oracle(
    photos: list, events: list
) -> None:
    photos = [(i, user * WIDE, at) for i, user, at in photos]
    events = [(at, user * WIDE, kind, photo) for at, user, kind, photo in events]
    stacked = pl.DataFrame({"user_id": [WIDE, 5 * WIDE], "t": [0, 10**9]})
    assert len(time_order(stacked, pl.lit(False))) == 3, "the three-column sort is the one run"
    with connection() as conn:
        found = author_activity(conn, photos_frame(photos), events_frame(events)).rows()
    assert found == brute_force(photos, events)


def brute_force_labels(photos: list, events: list, logs_end: datetime) -> list[tuple]:
    """Likes in [posted_at, posted_at + 7 d), row by row; complete when the window is logged."""
    week = timedelta(days=7)
    return [
        (
            photo_id,
            sum(
                1
                for ts, _, kind, target in events
                if kind == "like" and target == photo_id and posted <= ts < posted + week
            ),
            posted + week <= logs_end,
        )
        for photo_id, _, posted in photos
    ]


@settings(PROPERTY, max_examples=30)
@given(photos_st, events_st, st.integers(-100, 300))
def test_labels_match_the_brute_force_oracle(photos: list, events: list, end_hour: int) -> None:
    logs_end = T0 + timedelta(hours=end_hour)
    with connection() as conn:
        labels = label_rows(
            conn, photos_frame(photos), events_frame(events), logs_end.replace(tzinfo=None)
        )
    found = labels.select("photo_id", "likes_7d", "complete").sort("photo_id").rows()
    assert found == brute_force_labels(photos, events, logs_end)


@settings(PROPERTY, max_examples=30)
@given(photos_st, events_st)
def test_counting_by_author_buckets_counts_what_one_sort_counts(photos: list, events: list) -> None:
    posts = epoch_micros(
        photos_frame(photos).select("photo_id", "user_id", "posted_at"), "posted_at"
    )
    logins = events_frame(events).filter(pl.col("event") == "login").select("user_id", "ts")
    hits = epoch_micros(logins, "ts")
    window = micros(LOGIN_WINDOW)
    whole = events_before_posting(posts, hits, window)
    for per_bucket in (1, 3):
        assert by_author_buckets(posts, hits, window, per_bucket).to_list() == whole.to_list()

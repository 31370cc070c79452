"""Parsing one day of activity logs: every line is an event or a quarantine row.

The contract: one JSON object a line with `ts` (ISO 8601 with a zone),
`user_id` (int), `event` (login|view|like) and `photo_id` (int or null).
Anything else is rejected with the reason; an exact duplicate event counts once.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl

from lakehouse.lake.rejections import DETAIL_LIMIT, rejection

EVENT_TYPES = ("login", "view", "like")
PHOTO_EVENTS = ("view", "like")
REQUIRED_FIELDS = ("ts", "user_id", "event", "photo_id")
MAX_LINE_BYTES = 1 << 20
SHOWN_CHARS = 80
EARLY_SLACK = timedelta(days=1)
LATE_SLACK = timedelta(days=2)
# A line exactly as the writer formats it (`lakehouse.demo.world`): fields in this order,
# no spaces, integers of at most 18 digits (below 2**63), ts to the second in UTC.
CANONICAL_LINE = (
    r'^\{"ts":"(?<ts>[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9])'
    r'(?:Z|[+-]00:00)",'
    r'"user_id":(?<user_id>0|[1-9][0-9]{0,17}),'
    r'"event":"(?<event>login|view|like)",'
    r'"photo_id":(?<photo_id>null|0|[1-9][0-9]{0,17})\}$'
)
UTC_TS = pl.Datetime("us", "UTC")
EVENT_SCHEMA: dict[str, pl.DataType] = {
    "event_id": pl.String(),
    "ts": UTC_TS,
    "user_id": pl.Int64(),
    "event": pl.String(),
    "photo_id": pl.Int64(),
    "line": pl.Int64(),
    "day": pl.String(),
}


@dataclass(frozen=True)
class ParsedDay:
    events: pl.DataFrame
    rejected: list[dict[str, object]]


class LineError(ValueError):
    """Why one log line is not an event."""


def parse_log_day(data: bytes, key: str, day: date, *, in_bulk: bool = True) -> ParsedDay:
    """Events and rejections of one day's file; `lines in = events + rejected`.

    Lines in the writer's exact shape are parsed in bulk (`canonical_events`), the
    rest one by one (`parse_event`), which says what is wrong with a bad line;
    `in_bulk=False` sends every line the slow way, as a reference for the fast one.
    The first line of an event wins; a later copy is rejected as its duplicate.
    """
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    bulk = canonical_events(lines, day) if in_bulk else pl.DataFrame(schema=EVENT_SCHEMA)
    one_by_one = np.ones(len(lines) + 1, dtype=bool)
    one_by_one[0] = False
    one_by_one[bulk["line"].to_numpy()] = False
    parsed: list[tuple] = []
    rejected: list[dict[str, object]] = []
    for number in np.flatnonzero(one_by_one).tolist():
        raw = lines[number - 1]
        try:
            ts, user_id, event, photo_id = parse_event(raw, day)
        except LineError as exc:
            rejected.append(rejected_line(key, number, raw, str(exc)))
            continue
        event_id = event_identity(ts, user_id, event, photo_id)
        parsed.append((event_id, ts, user_id, event, photo_id, number, day.isoformat()))
    one_by_one_events = pl.DataFrame(parsed, schema=EVENT_SCHEMA, orient="row")
    candidates = pl.concat([bulk, one_by_one_events]).sort("line")
    first = pl.col("event_id").is_first_distinct()
    events = candidates.filter(first)
    copies = candidates.filter(~first).join(
        events.select("event_id", first_line="line"), on="event_id", how="left"
    )
    for number, first_line in copies.select("line", "first_line").iter_rows():
        rejected.append(
            rejected_line(key, number, lines[number - 1], f"duplicate of line {first_line}")
        )
    rejected.sort(key=lambda row: row["line"])  # type: ignore[arg-type,return-value]
    return ParsedDay(events, rejected)


def rejected_line(key: str, number: int, raw: bytes, reason: str) -> dict[str, object]:
    """A quarantine row for line `number`: its hash, and its start as text for a person."""
    sha = hashlib.sha256(raw).hexdigest()
    detail = raw[:DETAIL_LIMIT].decode("utf-8", errors="replace")
    return rejection(key, reason, sha256=sha, line=number, detail=detail)


def canonical_events(lines: list[bytes], day: date) -> pl.DataFrame:
    """The events of the lines in the writer's exact shape, parsed in bulk.

    Only a line that `CANONICAL_LINE` matches whole, on a real date near the
    file's day and with a photo where the event needs one, is here, with the
    values `parse_event` and `event_identity` give it; every other line is left
    out, for the per-line path to accept or reject with its reason.
    """
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    ts = pl.col("ts").str.to_datetime(
        "%Y-%m-%dT%H:%M:%S", time_unit="us", time_zone="UTC", strict=False
    )
    frame = (
        pl.DataFrame({"text": line_texts(lines)})
        .with_row_index("line", offset=1)
        .select(pl.col("line").cast(pl.Int64), pl.col("text").str.extract_groups(CANONICAL_LINE))
        .unnest("text")
        .filter(pl.col("ts").is_not_null())
        .with_columns(
            ts_text=pl.col("ts"),
            ts=ts,
            photo_id=pl.when(pl.col("photo_id") != "null").then(pl.col("photo_id")),
        )
        .filter(
            pl.col("ts").is_between(start - EARLY_SLACK, start + LATE_SLACK, closed="left")
            & ((pl.col("event") == "login") | pl.col("photo_id").is_not_null())
        )
    )
    # `datetime.isoformat` of a UTC time to the second, as `event_identity` writes it
    identities = frame.select(
        pl.concat_str(
            pl.col("ts_text") + "+00:00",
            "user_id",
            "event",
            pl.col("photo_id").fill_null(""),
            separator="|",
        ).cast(pl.Binary)
    ).to_series()
    event_ids = [sha.hexdigest()[:32] for sha in map(hashlib.sha256, identities.to_list())]
    return frame.select(
        event_id=pl.Series(event_ids, dtype=pl.String),
        ts="ts",
        user_id=pl.col("user_id").cast(pl.Int64),
        event="event",
        photo_id=pl.col("photo_id").cast(pl.Int64),
        line="line",
        day=pl.lit(day.isoformat()),
    )


def line_texts(lines: list[bytes]) -> pl.Series:
    """The lines as text; a line that is not UTF-8 is null (the per-line path says why)."""
    raw = pl.Series(lines, dtype=pl.Binary)
    try:
        return raw.cast(pl.String)
    except pl.exceptions.ComputeError:
        return pl.Series([text_or_none(line) for line in lines], dtype=pl.String)


def text_or_none(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_event(raw: bytes, day: date) -> tuple[datetime, int, str, int | None]:
    """(ts, user_id, event, photo_id) of a valid line; raises LineError with the reason."""
    if len(raw) > MAX_LINE_BYTES:
        raise LineError(f"line too long ({len(raw)} bytes > {MAX_LINE_BYTES})")
    if not raw.strip():
        raise LineError("empty line")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        record = json.loads(text, object_pairs_hook=unique_fields)
    except json.JSONDecodeError as exc:
        raise LineError(f"not JSON ({exc.msg}, column {exc.colno})") from exc
    except RecursionError as exc:
        raise LineError("not JSON (nested too deeply)") from exc
    except LineError:
        raise
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise LineError(f"not JSON ({shown(str(exc))})") from exc
    if not isinstance(record, dict):
        raise LineError(f"not a JSON object but {type(record).__name__}")
    missing = [field for field in REQUIRED_FIELDS if field not in record]
    if missing:
        raise LineError(f"missing field {', '.join(missing)}")
    event = record["event"]
    if not isinstance(event, str) or event not in EVENT_TYPES:
        raise LineError(f"unknown event type {shown(event)}")
    user_id = strict_int(record["user_id"], "user_id")
    photo_id = None if record["photo_id"] is None else strict_int(record["photo_id"], "photo_id")
    if event in PHOTO_EVENTS and photo_id is None:
        raise LineError(f"{event} event without photo_id")
    return parse_ts(record["ts"], day), user_id, event, photo_id


def unique_fields(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object whose fields are named once: with two values for a field, which is meant?"""
    record = dict(pairs)
    if len(record) < len(pairs):
        counts = Counter(name for name, _ in pairs)
        twice = sorted(name for name, n in counts.items() if n > 1)
        raise LineError(f"field {shown(', '.join(twice))} given more than once")
    return record


def shown(value: object) -> str:
    """A value as it appears in a reason: its repr, cut short (reasons are grouped and shown)."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[: SHOWN_CHARS - 1]}…"


def strict_int(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LineError(f"{field} is not an integer: {shown(value)}")
    if not 0 <= value < 2**63:
        raise LineError(f"{field} out of range: {shown(value)}")
    return value


def parse_ts(value: object, day: date) -> datetime:
    """A zone-aware timestamp in UTC, near the file's day (late lines happen, far ones are bugs)."""
    if not isinstance(value, str):
        raise LineError(f"ts is not a string: {shown(value)}")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError as exc:
        raise LineError(f"ts is not ISO 8601: {shown(value)}") from exc
    if ts.tzinfo is None:
        raise LineError(f"ts has no time zone: {shown(value)}")
    try:
        ts = ts.astimezone(UTC)
    except OverflowError as exc:  # year 1 with a positive offset: before any UTC instant
        raise LineError(f"ts {shown(value)} is out of range") from exc
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if not start - EARLY_SLACK <= ts < start + LATE_SLACK:
        raise LineError(f"ts {shown(value)} is far from the file's day {day.isoformat()}")
    return ts


def event_identity(ts: datetime, user_id: int, event: str, photo_id: int | None) -> str:
    """Content id of an event: the same event logged twice has the same id."""
    text = f"{ts.isoformat()}|{user_id}|{event}|{'' if photo_id is None else photo_id}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]

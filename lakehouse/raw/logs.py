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

import polars as pl

from lakehouse.raw.quarantine import DETAIL_LIMIT, rejection

EVENT_TYPES = ("login", "view", "like")
PHOTO_EVENTS = ("view", "like")
REQUIRED_FIELDS = ("ts", "user_id", "event", "photo_id")
MAX_LINE_BYTES = 1 << 20
SHOWN_CHARS = 80
EARLY_SLACK = timedelta(days=1)
LATE_SLACK = timedelta(days=2)
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


def parse_log_day(data: bytes, key: str, day: date) -> ParsedDay:
    """Events and rejections of one day's file; `lines in = events + rejected`."""
    events: list[tuple] = []
    rejected: list[dict[str, object]] = []
    first_line_of: dict[str, int] = {}
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        try:
            ts, user_id, event, photo_id = parse_event(raw, day)
            event_id = event_identity(ts, user_id, event, photo_id)
            if event_id in first_line_of:
                raise LineError(f"duplicate of line {first_line_of[event_id]}")
        except LineError as exc:
            sha = hashlib.sha256(raw).hexdigest()
            detail = raw[:DETAIL_LIMIT].decode("utf-8", errors="replace")
            rejected.append(rejection(key, str(exc), sha256=sha, line=number, detail=detail))
            continue
        first_line_of[event_id] = number
        events.append((event_id, ts, user_id, event, photo_id, number, day.isoformat()))
    frame = pl.DataFrame(events, schema=EVENT_SCHEMA, orient="row")
    return ParsedDay(frame, rejected)


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
        raise LineError(f"not JSON ({exc.msg} at column {exc.colno})") from exc
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

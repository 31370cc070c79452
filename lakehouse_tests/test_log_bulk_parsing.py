"""The bulk log parser gives exactly what the per-line parser gives, line for line.

`parse_log_day` parses lines in the writer's exact shape in bulk and every other
line one by one; `in_bulk=False` sends every line the slow way. Both must give the
same events (ids, times, line numbers) and the same quarantine rows and reasons.
"""

from __future__ import annotations

import random
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from lakehouse.demo.world import generate_world
from lakehouse.raw.logs import ParsedDay, canonical_events, parse_log_day
from lakehouse_tests.test_hostile_input import DAY as HOSTILE_DAY
from lakehouse_tests.test_hostile_input import HOSTILE_LINES

pytestmark = pytest.mark.scale

START = date(2026, 10, 1)
KEY = "logs/2026-10-03.jsonl"


@pytest.fixture(scope="module")
def generated_day(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The lines of the synthetic world's third day (one of them an unknown event)."""
    folder = tmp_path_factory.mktemp("world")
    generate_world(folder, f"sqlite:///{folder / 'metadata.db'}", photos=30, users=300, days=3)
    return Path(folder / "logs" / "2026-10-03.jsonl").read_bytes().splitlines()


def both_ways(lines: list[bytes], day: date) -> ParsedDay:
    """The day parsed in bulk, checked equal to the day parsed one line at a time."""
    data = b"".join(line + b"\n" for line in lines)
    bulk = parse_log_day(data, KEY, day)
    one_by_one = parse_log_day(data, KEY, day, in_bulk=False)
    assert_frame_equal(bulk.events, one_by_one.events)
    assert bulk.rejected == one_by_one.rejected
    return bulk


def test_a_generated_day_parses_the_same_in_bulk(generated_day: list[bytes]) -> None:
    day = date(2026, 10, 3)
    parsed = both_ways(generated_day, day)
    assert parsed.events.height > 500
    assert parsed.events.height + len(parsed.rejected) == len(generated_day)
    taken_in_bulk = canonical_events(generated_day, day).height
    assert taken_in_bulk == len(generated_day) - 1, "all but the bad line take the fast path"


# Lines the bulk pattern matches, or nearly, that it must leave to the per-line path
# (or accept with exactly the per-line values): clock and zone limits, the window's
# edges, ids at the edge of 2**63, a photo event without a photo.
def canonical(ts: str, user: str = "7", event: str = "login", photo: str = "null") -> bytes:
    return f'{{"ts":"{ts}","user_id":{user},"event":"{event}","photo_id":{photo}}}'.encode()


EDGE_LINES = [
    canonical("2026-10-03T24:00:00Z"),
    canonical("2026-10-03T23:60:00Z"),
    canonical("2026-10-03T23:59:60Z"),
    canonical("2026-02-30T10:00:00Z"),
    canonical("0000-01-01T00:00:00Z"),
    canonical("2026-10-03T10:00:00+24:00"),
    canonical("2026-10-03T10:00:00+23:60"),
    canonical("2026-10-03T10:00:00+23:59"),
    canonical("2026-10-03T10:00:00-00:00"),
    canonical("2026-10-03T10:00:00-13:30", user="8"),
    canonical("2026-10-02T00:00:00Z", user="1"),  # first instant of the window
    canonical("2026-10-01T23:59:59Z", user="1"),  # just before it
    canonical("2026-10-04T23:59:59Z", user="1"),  # last second of the window
    canonical("2026-10-05T00:00:00Z", user="1"),  # just after it
    canonical("2026-10-05T01:00:00+01:00", user="2"),  # after it, but not in UTC
    canonical("2026-10-03T10:00:00Z", user="0", event="view", photo="0"),
    canonical("2026-10-03T10:00:00Z", user="9" * 18, event="like", photo="9" * 18),
    canonical("2026-10-03T10:00:00Z", user=str(2**63 - 1)),
    canonical("2026-10-03T10:00:00Z", user=str(2**63)),
    canonical("2026-10-03T10:00:00Z", user="07"),
    canonical("2026-10-03T10:00:00Z", user="-7"),
    canonical("2026-10-03T10:00:00Z", event="view"),
    canonical("2026-10-03T10:00:00Z", event="like", photo="1.0"),
    canonical("2026-10-03T10:00:00.000001Z"),
    canonical("2026-10-03T10:00:00Z") + b"\r",
    canonical("2026-10-03T10:00:00Z") + b" ",
    canonical("2026-10-03T10:00:00+00:00"),  # a duplicate of the line two above
    canonical("2026-10-03T12:00:00+02:00"),  # and of that one, from another zone
    canonical("２０２６-10-03T10:00:00Z"),  # noqa: RUF001 (digits, not ASCII ones)
]


def test_hostile_and_edge_lines_among_good_ones_parse_the_same(
    generated_day: list[bytes],
) -> None:
    assert HOSTILE_DAY == "2026-10-03"
    rng = random.Random(8)
    lines = list(generated_day)
    for bad in [line for _, line, _ in HOSTILE_LINES] + EDGE_LINES:
        lines.insert(rng.randrange(len(lines) + 1), bad)
    copies = rng.sample(generated_day, 20)  # duplicates before and after their first line
    for copy in copies:
        lines.insert(rng.randrange(len(lines) + 1), copy)
    parsed = both_ways(lines, date(2026, 10, 3))
    reasons = [row["reason"] for row in parsed.rejected]
    assert sum(reason.startswith("duplicate of line") for reason in reasons) >= 20 + 4
    assert any("far from the file's day" in reason for reason in reasons)
    assert any("out of range" in reason for reason in reasons)


def test_a_date_that_does_not_exist_is_not_moved_into_the_window() -> None:
    lines = [canonical(f"2026-02-{day}T10:00:00Z") for day in ("28", "29", "30")]
    parsed = both_ways(lines, date(2026, 3, 1))
    assert parsed.events["line"].to_list() == [1]
    assert all("not ISO 8601" in row["reason"] for row in parsed.rejected)


zones = st.sampled_from(["Z", "+00:00", "-00:00", "+02:00", "-13:30", "+23:59", "+24:00"])
numbers = st.sampled_from(["0", "1", "07", str(2**63 - 1), str(2**63), "9" * 18, "null"])
canonical_lines = st.builds(
    lambda day, hour, minute, second, zone, user, event, photo: canonical(
        f"2026-10-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{zone}", user, event, photo
    ),
    st.integers(1, 31),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    zones,
    numbers,
    st.sampled_from(["login", "view", "like"]),
    numbers,
)


@settings(max_examples=40, derandomize=True, deadline=None, database=None)
@given(st.lists(canonical_lines, max_size=12))
def test_lines_in_or_near_the_bulk_shape_parse_the_same(lines: list[bytes]) -> None:
    both_ways([*lines, *lines[:3]], date(2026, 10, 3))

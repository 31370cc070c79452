"""The synthetic world keeps the source contract, is reproducible, and has learnable likes."""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from lakehouse.demo.world import (
    CONTENT_CLASSES,
    EVENT_TYPES,
    STYLES,
    WorldSummary,
    generate_world,
)

pytestmark = pytest.mark.foundation

START = date(2026, 10, 1)
DAYS = 30
PHOTOS = 400
LOG_KEYS = {"ts", "user_id", "event", "photo_id"}
TS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
TS_SQLITE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")


@dataclass(frozen=True)
class World:
    root: Path
    url: str
    summary: WorldSummary


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The default-size world, generated once for the module."""
    root = tmp_path_factory.mktemp("world")
    url = f"sqlite:///{root / 'metadata.db'}"
    return World(root, url, generate_world(root, url, days=DAYS, start=START))


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file under root, keyed by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _small_world(root: Path, seed: int) -> dict[str, str]:
    generate_world(
        root,
        f"sqlite:///{root / 'metadata.db'}",
        photos=60,
        users=10,
        days=10,
        seed=seed,
    )
    return _digests(root)


def _rows(world: World, sql: str) -> list[sa.Row]:
    engine = sa.create_engine(world.url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(sql)))
    finally:
        engine.dispose()


def _log_lines(world: World) -> dict[str, list[str]]:
    return {
        path.name: path.read_text().splitlines() for path in sorted((world.root / "logs").iterdir())
    }


def _parsed_or_none(line: str) -> dict | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _is_good_event(record: dict | None) -> bool:
    return record is not None and set(record) == LOG_KEYS and record["event"] in EVENT_TYPES


def _good_events(world: World) -> list[dict]:
    records = (_parsed_or_none(line) for lines in _log_lines(world).values() for line in lines)
    return [record for record in records if _is_good_event(record)]


def _utc(ts: str) -> datetime:
    """Parse an ISO 8601 timestamp, `Z` or `+00:00`, into an aware datetime."""
    return datetime.fromisoformat(ts)


def _good_photos(world: World) -> dict[int, tuple[int, datetime]]:
    """photo_id -> (user_id, posted_at) for the good photos (ids 1..PHOTOS)."""
    rows = _rows(
        world,
        f"SELECT photo_id, user_id, posted_at FROM photos WHERE photo_id <= {PHOTOS}",
    )
    return {photo_id: (user_id, _utc(posted_at)) for photo_id, user_id, posted_at in rows}


def _likes_in_first_week(world: World) -> dict[int, int]:
    """Likes per good photo within 7 days of posting, for photos whose week is all logged."""
    photos = _good_photos(world)
    log_end = datetime(START.year, START.month, START.day, tzinfo=UTC) + timedelta(days=DAYS)
    complete = {p for p, (_, posted) in photos.items() if posted + timedelta(days=7) <= log_end}
    likes = Counter(
        e["photo_id"]
        for e in _good_events(world)
        if e["event"] == "like"
        and e["photo_id"] in complete
        and _utc(e["ts"]) - photos[e["photo_id"]][1] < timedelta(days=7)
    )
    return {photo_id: likes[photo_id] for photo_id in sorted(complete)}


def _author_logins_day_before(world: World, photo_ids: list[int]) -> np.ndarray:
    """Logins of each photo's author in the 24 h before it was posted, from the logs."""
    photos = _good_photos(world)
    logins: dict[int, list[datetime]] = {}
    for e in _good_events(world):
        if e["event"] == "login":
            logins.setdefault(e["user_id"], []).append(_utc(e["ts"]))

    def day_before(photo_id: int) -> int:
        author, posted = photos[photo_id]
        return sum(posted - timedelta(hours=24) <= t < posted for t in logins.get(author, []))

    return np.array([day_before(p) for p in photo_ids])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks, so ties do not bias the Spearman correlation."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


# --- reproducibility --------------------------------------------------------------


def test_same_seed_writes_byte_identical_files(tmp_path: Path) -> None:
    first = _small_world(tmp_path / "a", seed=7)
    second = _small_world(tmp_path / "b", seed=7)
    assert "metadata.db" in first
    assert first == second


def test_another_seed_writes_other_files(tmp_path: Path) -> None:
    first = _small_world(tmp_path / "a", seed=7)
    other = _small_world(tmp_path / "b", seed=8)
    assert first["metadata.db"] != other["metadata.db"]
    assert first != other


def test_regenerating_replaces_a_larger_world(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    generate_world(tmp_path, url, photos=80, users=10, days=12)
    summary = generate_world(tmp_path, url, photos=20, users=5, days=4)
    assert len([p for p in (tmp_path / "photos").rglob("*") if p.is_file()]) == summary.objects
    assert len(list((tmp_path / "logs").iterdir())) == 4


# --- the source contract ----------------------------------------------------------


def test_tables_have_exactly_the_contract_columns(world: World) -> None:
    engine = sa.create_engine(world.url)
    try:
        inspector = sa.inspect(engine)
        columns = {
            t: [c["name"] for c in inspector.get_columns(t)] for t in inspector.get_table_names()
        }
    finally:
        engine.dispose()
    assert columns == {
        "users": ["user_id", "created_at", "home_city"],
        "photos": [
            "photo_id",
            "user_id",
            "object_key",
            "title",
            "posted_at",
            "latitude",
            "longitude",
            "location_name",
        ],
        "photo_labels": ["photo_id", "content_label", "style_label", "labeled_at"],
    }


def test_sqlite_timestamps_are_iso_utc_and_read_back_aware(world: World) -> None:
    stored = [
        value
        for sql in (
            "SELECT created_at FROM users",
            "SELECT posted_at FROM photos",
            "SELECT labeled_at FROM photo_labels",
        )
        for (value,) in _rows(world, sql)
    ]
    assert all(isinstance(v, str) and TS_SQLITE.match(v) for v in stored)
    engine = sa.create_engine(world.url)
    try:
        photos = sa.Table("photos", sa.MetaData(), autoload_with=engine)
        with engine.connect() as connection:
            posted = connection.execute(sa.select(photos.c.posted_at).limit(5)).scalars().all()
    finally:
        engine.dispose()
    assert all(p.tzinfo is not None and p.utcoffset() == timedelta(0) for p in posted)


def test_users_signed_up_before_the_window_and_live_in_known_cities(
    world: World,
) -> None:
    window_start = datetime(START.year, START.month, START.day, tzinfo=UTC)
    users = _rows(world, "SELECT user_id, created_at, home_city FROM users")
    assert [u for u, _, _ in users] == list(range(1, world.summary.users + 1))
    assert all(_utc(created) < window_start for _, created, _ in users)
    assert 2 <= len({city for _, _, city in users}) <= 8


def test_one_log_file_a_day_named_by_date(world: World) -> None:
    names = list(_log_lines(world))
    assert names == [f"{START + timedelta(days=d)}.jsonl" for d in range(DAYS)]


def test_good_log_lines_follow_the_contract_and_are_sorted(world: World) -> None:
    for name, lines in _log_lines(world).items():
        records = [r for r in map(_parsed_or_none, lines) if _is_good_event(r)]
        timestamps = [r["ts"] for r in records]
        assert timestamps == sorted(timestamps)
        for r in records:
            assert TS_Z.match(r["ts"]) and r["ts"].startswith(name.removesuffix(".jsonl"))
            assert type(r["user_id"]) is int
            assert (r["photo_id"] is None) == (r["event"] == "login")
            assert r["photo_id"] is None or type(r["photo_id"]) is int
            assert json.dumps(r, separators=(",", ":")) in lines
    assert len(_good_events(world)) == world.summary.events


def test_views_and_likes_come_after_posting(world: World) -> None:
    photos = _good_photos(world)
    reactions = [e for e in _good_events(world) if e["event"] != "login"]
    assert all(_utc(e["ts"]) > photos[e["photo_id"]][1] for e in reactions)
    kinds = Counter(e["event"] for e in reactions)
    assert 2 <= kinds["view"] / kinds["like"] <= 3


def test_each_bad_log_line_appears_once_on_its_own_day(world: World) -> None:
    bad = {
        name: [r for r in map(_parsed_or_none, lines) if not _is_good_event(r)]
        for name, lines in _log_lines(world).items()
    }
    found = [(name, r) for name, records in bad.items() for r in records]
    assert sum(r is None for _, r in found) == 1
    assert sum(r is not None and "user_id" not in r for _, r in found) == 1
    assert sum(r is not None and r.get("event") == "share" for _, r in found) == 1
    assert len(found) == world.summary.bad_log_lines == 3
    assert len({name for name, _ in found}) == 3


def test_each_bad_object_appears_once_and_the_rest_decode(world: World) -> None:
    kinds: Counter[str] = Counter()
    for path in (world.root / "photos").rglob("*"):
        if path.is_file():
            kinds[_object_kind(path.read_bytes())] += 1
    assert kinds["empty"] == kinds["html"] == kinds["truncated_jpeg"] == 1
    assert kinds["jpeg"] + kinds["png"] == world.summary.objects - 3
    assert 0.6 < kinds["jpeg"] / (kinds["jpeg"] + kinds["png"]) < 0.8
    assert world.summary.bad_objects == 3


def _object_kind(data: bytes) -> str:
    if not data:
        return "empty"
    if data.lstrip().lower().startswith(b"<!doctype html"):
        return "html"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.size in {(64, 64), (96, 96), (128, 96), (96, 128)}
            return image.format.lower()
    except OSError:
        return "truncated_jpeg" if data.startswith(b"\xff\xd8") else "unknown"


def test_each_bad_photo_row_appears_once(world: World) -> None:
    rows = _rows(world, "SELECT photo_id, user_id, object_key, title, latitude FROM photos")
    users = {u for (u,) in _rows(world, "SELECT user_id FROM users")}
    ids = Counter(r.photo_id for r in rows)
    duplicated = [r for r in rows if ids[r.photo_id] > 1]
    assert len(duplicated) == 2 and duplicated[0].title != duplicated[1].title
    assert sum(r.user_id not in users for r in rows) == 1
    assert sum(not (world.root / r.object_key).is_file() for r in rows) == 1
    assert sum(not -90 <= r.latitude <= 90 for r in rows) == 1
    assert set(ids) == set(range(1, PHOTOS + 7))
    assert world.summary.bad_photo_rows == 4


def test_every_bad_object_has_a_photos_row(world: World) -> None:
    keys = {key for (key,) in _rows(world, "SELECT object_key FROM photos")}
    bad = [
        path
        for path in (world.root / "photos").rglob("*")
        if path.is_file() and _object_kind(path.read_bytes()) not in {"jpeg", "png"}
    ]
    assert len(bad) == 3
    assert all(str(path.relative_to(world.root)) in keys for path in bad)


# --- labels and likes -------------------------------------------------------------


def test_labels_cover_about_40_percent_with_every_class_and_style(world: World) -> None:
    labels = _rows(
        world,
        "SELECT photo_id, content_label, style_label, labeled_at FROM photo_labels",
    )
    photos = _good_photos(world)
    assert 0.3 <= len(labels) / PHOTOS <= 0.5
    assert len(labels) == world.summary.labels
    assert {(c, s) for _, c, s, _ in labels} == {(c, s) for c in CONTENT_CLASSES for s in STYLES}
    assert all(_utc(at) > photos[p][1] for p, _, _, at in labels)


def test_likes_in_first_week_differ_by_content_class(world: World) -> None:
    likes = _likes_in_first_week(world)
    content = dict(_rows(world, "SELECT photo_id, content_label FROM photo_labels"))
    by_class: dict[str, list[int]] = {}
    for photo_id, n in likes.items():
        if photo_id in content:
            by_class.setdefault(content[photo_id], []).append(n)
    means = {c: float(np.mean(v)) for c, v in by_class.items()}
    assert set(means) == set(CONTENT_CLASSES)
    assert max(means.values()) / min(means.values()) > 1.3


def test_active_authors_get_more_likes(world: World) -> None:
    likes = _likes_in_first_week(world)
    photo_ids = list(likes)
    logins = _author_logins_day_before(world, photo_ids)
    liked = np.array([likes[p] for p in photo_ids])
    spearman = np.corrcoef(_ranks(logins), _ranks(liked))[0, 1]
    assert spearman > 0.1

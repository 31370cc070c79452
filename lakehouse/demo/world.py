"""The embedded synthetic source world: photos, activity logs and a metadata database.

It follows the source contract in DESIGN.md exactly, so the pipeline runs on it
the same way it runs on a real deployment. Likes carry real signal (content,
style, posting hour, author activity) so the popularity model has something to
learn, and each kind of bad input a real bucket and database hold appears
exactly once so every quarantine path is exercised. Everything is derived from
the seed: the same arguments give byte-identical files, the SQLite file included.
"""

from __future__ import annotations

import colorsys
import io
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import sqlalchemy as sa
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from sqlalchemy.dialects import sqlite

from lakehouse.vocabulary import CONTENT_CLASSES, STYLES

EVENT_TYPES = ("login", "view", "like")

CITIES = (
    ("Lisbon", 38.7223, -9.1393),
    ("Berlin", 52.5200, 13.4050),
    ("Tokyo", 35.6762, 139.6503),
    ("New York", 40.7128, -74.0060),
    ("Sao Paulo", -23.5505, -46.6333),
    ("Nairobi", -1.2921, 36.8219),
    ("Sydney", -33.8688, 151.2093),
    ("Reykjavik", 64.1466, -21.9426),
)

IMAGE_SIZES = ((64, 64), (96, 96), (128, 96), (96, 128))
JPEG_QUALITY = 90
PNG_SHARE = 0.3
LABELLED_SHARE = 0.4

# How much each factor multiplies a photo's expected likes in its first 7 days.
CONTENT_APPEAL = {"circle": 1.0, "square": 0.6, "triangle": 1.3, "stripes": 1.9}
STYLE_APPEAL = {"gray": 0.7, "high_contrast": 1.4, "blurred": 0.9}
BASE_LIKES = 2.5
VIEWS_PER_LIKE = 2.5
LIKE_DELAY_DAYS = 1.5
VIEW_DELAY_DAYS = 1.0

CONTENT_WORDS = {
    "circle": ("circle", "ring", "dot", "disc"),
    "square": ("square", "box", "block", "tile"),
    "triangle": ("triangle", "peak", "wedge", "pyramid"),
    "stripes": ("stripes", "lines", "bars", "zebra"),
}
TITLE_WORDS = (
    "bright", "quiet", "morning", "evening", "little", "big", "old", "new",
    "blue", "golden", "city", "summer", "view", "moment", "shot", "day",
    "walk", "scene", "study", "detail",
)  # fmt: skip

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
    b"<body><h1>Not Found</h1><p>The requested object was not found.</p></body></html>\n"
)

SECONDS_PER_DAY = 86_400
_ISO_UTC = "%(year)04d-%(month)02d-%(day)02dT%(hour)02d:%(minute)02d:%(second)02d+00:00"
# Timezone-aware on Postgres; ISO 8601 text ("2026-10-03T14:05:09+00:00") on SQLite,
# which SQLAlchemy and every ISO parser read back as an aware UTC datetime.
TIMESTAMP = sa.DateTime(timezone=True).with_variant(
    sqlite.DATETIME(storage_format=_ISO_UTC), "sqlite"
)


@dataclass(frozen=True)
class WorldSummary:
    """What `generate_world` wrote, so callers and tests can check counts."""

    photos: int  # good photos: ids 1..photos, each with a valid image object
    bad_objects: int  # truncated JPEG, empty file, HTML page saved as .jpg
    objects: int  # every file under photos/, good and bad
    users: int
    labels: int
    log_days: int
    events: int  # good log lines
    bad_log_lines: int
    bad_photo_rows: int  # dangling user, missing object, bad latitude, duplicate id
    kept_labels: int = 0  # photo_labels rows someone else wrote (an import), kept as they were


@dataclass(frozen=True)
class _Posts:
    """The good photos, one array entry per photo_id - 1, in posting order."""

    authors: np.ndarray  # user_id
    posted_s: np.ndarray  # seconds since the window start
    content: np.ndarray  # index into CONTENT_CLASSES
    style: np.ndarray  # index into STYLES
    is_png: np.ndarray
    size: np.ndarray  # index into IMAGE_SIZES


@dataclass(frozen=True)
class _Events:
    """Log events as parallel arrays; photo -1 means null."""

    ts_s: np.ndarray
    user: np.ndarray
    event: np.ndarray  # index into EVENT_TYPES
    photo: np.ndarray

    def columns(self) -> tuple[np.ndarray, ...]:
        return (self.ts_s, self.user, self.event, self.photo)

    @staticmethod
    def concat(parts: list[_Events]) -> _Events:
        return _Events(*map(np.concatenate, zip(*(p.columns() for p in parts), strict=True)))

    def where(self, keep: np.ndarray) -> _Events:
        return _Events(*(column[keep] for column in self.columns()))


def generate_world(
    sources_dir: Path,
    metadata_db_url: str,
    *,
    photos: int = 400,
    users: int = 40,
    days: int = 30,
    seed: int = 0,
    start: date = date(2026, 10, 1),
    logins_per_day: float = 2.0,
    progress: Callable[[int], object] | None = None,
) -> WorldSummary:
    """Write the synthetic sources; `photos/` and `logs/` and the three tables are replaced.

    `progress(n)` is called as photos are written (n of them each time), for a bar.

    Files whose bytes are already right are left untouched (mtime included), so
    regenerating the same world changes nothing that the lakehouse observes.
    """
    if photos < 1 or users < 1 or days < 3 or logins_per_day <= 0:
        raise ValueError("need photos >= 1, users >= 1, days >= 3 and logins_per_day > 0")
    world_rng, image_rng, event_rng = np.random.default_rng(seed).spawn(3)
    window_start = datetime(start.year, start.month, start.day, tzinfo=UTC)
    horizon_s = days * SECONDS_PER_DAY

    rates = _login_rates(world_rng, users, logins_per_day)
    homes = world_rng.integers(0, len(CITIES), users)
    posts = _posts(world_rng, photos, rates, horizon_s)
    logins = _logins(event_rng, rates, days)
    expected = _expected_likes(event_rng, posts, _author_logins_before(logins, posts))
    events = _Events.concat([logins, _reactions(event_rng, posts, expected, users, horizon_s)])

    sources_dir = Path(sources_dir)
    keys = _photo_keys(posts, window_start)
    good_rows = _photo_rows(world_rng, posts, homes, window_start, keys)
    bad = _bad_photo_rows(world_rng, good_rows, homes, window_start, horizon_s)
    objects = _write_photos(sources_dir, image_rng, posts, keys, progress)
    objects += _write_bad_objects(sources_dir, image_rng, bad)

    day_lines = _log_lines_by_day(events, days, window_start)
    _write_logs(sources_dir / "logs", start, _with_bad_lines(day_lines, days, posts, window_start))
    written = {*keys, *bad.object_kinds, *bad.image_keys, *_log_keys(start, days)}
    _prune(sources_dir, ("photos", "logs"), keep=written)

    labels = _label_rows(world_rng, posts, window_start, horizon_s)
    kept = _write_metadata_db(
        metadata_db_url,
        users=_user_rows(world_rng, homes, window_start),
        photos=good_rows + bad.rows,
        labels=labels,
    )
    return WorldSummary(
        photos=photos,
        bad_objects=len(bad.object_kinds),
        objects=objects,
        users=users,
        labels=len(labels),
        log_days=days,
        events=len(events.ts_s),
        bad_log_lines=BAD_LINE_KINDS,
        bad_photo_rows=len(bad.rows) - len(bad.object_kinds),
        kept_labels=kept,
    )


# --- people and posts -------------------------------------------------------------


def _login_rates(rng: np.random.Generator, users: int, mean: float) -> np.ndarray:
    """Mean logins per day for each user; gamma so a few users are far more active."""
    return rng.gamma(shape=2.0, scale=mean / 2.0, size=users)


def _posts(rng: np.random.Generator, photos: int, rates: np.ndarray, horizon_s: int) -> _Posts:
    """Good photos in posting order (so ids grow with posted_at), classes balanced."""
    combos = rng.permutation(np.arange(photos) % (len(CONTENT_CLASSES) * len(STYLES)))
    return _Posts(
        authors=rng.choice(len(rates), size=photos, p=rates / rates.sum()) + 1,
        posted_s=np.sort(rng.integers(0, horizon_s, photos)),
        content=combos // len(STYLES),
        style=combos % len(STYLES),
        is_png=rng.random(photos) < PNG_SHARE,
        size=rng.integers(0, len(IMAGE_SIZES), photos),
    )


def _photo_keys(posts: _Posts, window_start: datetime) -> list[str]:
    """Object keys nested by posting year and month, like an upload bucket."""
    return [
        _photo_key(i + 1, _at(window_start, s), "png" if png else "jpg")
        for i, (s, png) in enumerate(zip(posts.posted_s, posts.is_png, strict=True))
    ]


def _photo_key(photo_id: int, posted_at: datetime, ext: str) -> str:
    return f"photos/{posted_at:%Y}/{posted_at:%m}/{photo_id:06d}.{ext}"


def _at(window_start: datetime, seconds: int | np.integer) -> datetime:
    return window_start + timedelta(seconds=int(seconds))


# --- activity ---------------------------------------------------------------------


def _logins(rng: np.random.Generator, rates: np.ndarray, days: int) -> _Events:
    """Each user's logins, a Poisson number a day at uniform times."""
    counts = rng.poisson(rates[:, None], size=(len(rates), days)).ravel()
    user = np.repeat(np.repeat(np.arange(1, len(rates) + 1), days), counts)
    day = np.repeat(np.tile(np.arange(days), len(rates)), counts)
    ts_s = day * SECONDS_PER_DAY + rng.integers(0, SECONDS_PER_DAY, counts.sum())
    login = np.full_like(user, EVENT_TYPES.index("login"))
    return _Events(ts_s, user, login, np.full_like(user, -1))


def _author_logins_before(logins: _Events, posts: _Posts) -> np.ndarray:
    """Author logins in the 24 h before each post: the activity feature likes depend on.

    One sorted key per login, (user, time), so every post's window is two binary
    searches: no per-user pass over all logins, which at millions of users would not end.
    """
    stride = (
        int(max(logins.ts_s.max(initial=0), posts.posted_s.max(initial=0))) + 2 * SECONDS_PER_DAY
    )
    keys = np.sort(logins.user.astype(np.int64) * stride + logins.ts_s + SECONDS_PER_DAY)
    until = posts.authors.astype(np.int64) * stride + posts.posted_s + SECONDS_PER_DAY
    return np.searchsorted(keys, until) - np.searchsorted(keys, until - SECONDS_PER_DAY)


def _expected_likes(
    rng: np.random.Generator, posts: _Posts, author_logins: np.ndarray
) -> np.ndarray:
    """Mean likes in the first 7 days: content x style x posting hour x author activity x noise."""
    content = np.array([CONTENT_APPEAL[c] for c in CONTENT_CLASSES])[posts.content]
    style = np.array([STYLE_APPEAL[s] for s in STYLES])[posts.style]
    hour = (posts.posted_s % SECONDS_PER_DAY) // 3600
    hour_appeal = np.select([hour >= 18, hour < 6], [1.5, 0.7], 1.0)
    activity = np.sqrt(1.0 + author_logins)
    noise = rng.lognormal(0.0, 0.3, len(hour))
    return BASE_LIKES * content * style * hour_appeal * activity * noise


def _reactions(
    rng: np.random.Generator,
    posts: _Posts,
    expected: np.ndarray,
    users: int,
    horizon_s: int,
) -> _Events:
    """Likes and views of posted photos, after posting; those past the window are dropped."""
    like_counts = rng.poisson(expected)
    view_counts = rng.poisson(expected * VIEWS_PER_LIKE)
    likes = _reactions_of(rng, posts, like_counts, LIKE_DELAY_DAYS, users, "like")
    views = _reactions_of(rng, posts, view_counts, VIEW_DELAY_DAYS, users, "view")
    both = _Events.concat([likes, views])
    return both.where(both.ts_s < horizon_s)


def _reactions_of(
    rng: np.random.Generator,
    posts: _Posts,
    counts: np.ndarray,
    delay_days: float,
    users: int,
    event: str,
) -> _Events:
    """`counts[i]` events of one type on photo i + 1 by random users, exponentially delayed."""
    photo = np.repeat(np.arange(1, len(counts) + 1), counts)
    delay = rng.exponential(delay_days * SECONDS_PER_DAY, counts.sum()).astype(np.int64)
    ts_s = posts.posted_s[photo - 1] + np.maximum(delay, 1)
    user = rng.integers(1, users + 1, counts.sum())
    return _Events(ts_s, user, np.full_like(user, EVENT_TYPES.index(event)), photo)


def _log_lines_by_day(events: _Events, days: int, window_start: datetime) -> Iterator[list[str]]:
    """JSON lines per day file, sorted by ts (ties broken by the other fields), a day at a time.

    Polars formats the lines in bulk, exactly as `json.dumps` with compact
    separators would, so ten million events take seconds, not many minutes.
    """
    order = np.lexsort((events.photo, events.event, events.user, events.ts_s))
    bounds = np.searchsorted(events.ts_s[order], np.arange(days + 1) * SECONDS_PER_DAY)
    start_us = int(window_start.timestamp()) * 1_000_000
    names = dict(enumerate(EVENT_TYPES))
    for day in range(days):
        rows = order[bounds[day] : bounds[day + 1]]
        frame = pl.DataFrame(
            {
                "ts": events.ts_s[rows] * 1_000_000 + start_us,
                "user_id": events.user[rows],
                "event": events.event[rows],
                "photo_id": events.photo[rows],
            },
            schema={"ts": pl.Int64, "user_id": pl.Int64, "event": pl.Int64, "photo_id": pl.Int64},
        )
        lines = frame.select(
            pl.concat_str(
                pl.lit('{"ts":"'),
                pl.col("ts").cast(pl.Datetime("us", "UTC")).dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                pl.lit('","user_id":'),
                pl.col("user_id"),
                pl.lit(',"event":"'),
                pl.col("event").replace_strict(names, return_dtype=pl.String),
                pl.lit('","photo_id":'),
                pl.when(pl.col("photo_id") > 0)
                .then(pl.col("photo_id").cast(pl.String))
                .otherwise(pl.lit("null")),
                pl.lit("}"),
            )
        )
        yield lines.to_series().to_list()


def _iso_z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_line(record: dict) -> str:
    return json.dumps(record, separators=(",", ":"))


BAD_LINE_KINDS = 3  # a broken line, one without user_id, one unknown event


def _with_bad_lines(
    day_lines: Iterator[list[str]], days: int, posts: _Posts, window_start: datetime
) -> Iterator[list[str]]:
    """Put a broken line, one without user_id and one unknown event mid-file on three days."""
    makers = (_broken_line, _line_without_user, _line_with_unknown_event)
    bad_days = {days * k // BAD_LINE_KINDS: make for k, make in enumerate(makers)}
    for day, lines in enumerate(day_lines):
        make = bad_days.get(day)
        if make is not None:
            middle = len(lines) // 2
            ts = (
                json.loads(lines[middle - 1])["ts"]
                if middle
                else _iso_z(_at(window_start, day * SECONDS_PER_DAY))
            )
            lines.insert(middle, make(ts, _latest_photo(posts, window_start, ts)))
        yield lines


def _latest_photo(posts: _Posts, window_start: datetime, ts: str) -> int | None:
    """The newest photo posted by `ts`, so the bad lines look like real traffic."""
    seconds = (datetime.fromisoformat(ts) - window_start).total_seconds()
    posted = int(np.searchsorted(posts.posted_s, seconds, side="right"))
    return posted or None


def _broken_line(ts: str, photo: int | None) -> str:
    whole = _json_line({"ts": ts, "user_id": 1, "event": "view", "photo_id": photo})
    return whole[: len(whole) // 2]


def _line_without_user(ts: str, photo: int | None) -> str:
    event = "view" if photo else "login"
    return _json_line({"ts": ts, "event": event, "photo_id": photo})


def _line_with_unknown_event(ts: str, photo: int | None) -> str:
    return _json_line({"ts": ts, "user_id": 1, "event": "share", "photo_id": photo})


def _write_logs(logs_dir: Path, start: date, day_lines: Iterator[list[str]]) -> None:
    for offset, lines in enumerate(day_lines):
        day = start + timedelta(days=offset)
        _write_object(
            logs_dir / f"{day.isoformat()}.jsonl", "".join(f"{line}\n" for line in lines).encode()
        )


def _log_keys(start: date, days: int) -> set[str]:
    return {f"logs/{(start + timedelta(days=offset)).isoformat()}.jsonl" for offset in range(days)}


def _prune(sources_dir: Path, folders: tuple[str, ...], keep: set[str]) -> None:
    """Remove files of an earlier, larger world, so they do not linger among the new ones."""
    for folder in folders:
        for path in sorted((sources_dir / folder).rglob("*"), reverse=True):
            key = path.relative_to(sources_dir).as_posix()
            if path.is_file() and key not in keep:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()


# --- images -----------------------------------------------------------------------


def _write_photos(
    sources_dir: Path,
    rng: np.random.Generator,
    posts: _Posts,
    keys: list[str],
    progress: Callable[[int], object] | None = None,
) -> int:
    """One generated image per good photo; returns how many files were written."""
    for i, key in enumerate(keys):
        content, style = CONTENT_CLASSES[posts.content[i]], STYLES[posts.style[i]]
        image = _image(rng, content, style, IMAGE_SIZES[posts.size[i]])
        _write_object(sources_dir / key, _encoded(image, png=bool(posts.is_png[i])))
        if progress is not None:
            progress(1)
    return len(keys)


def _write_object(path: Path, data: bytes) -> None:
    """Write `data` unless the file already holds exactly it."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _image(
    rng: np.random.Generator, content: str, style: str, size: tuple[int, int]
) -> Image.Image:
    """A clear shape of the content class on a plain background, in the given style."""
    foreground, background = _palette(rng, style)
    image = Image.new("RGB", size, background)
    _draw_content(ImageDraw.Draw(image), rng, content, size, foreground)
    return _styled(rng, image, style)


def _palette(rng: np.random.Generator, style: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Foreground and background far apart in lightness, so the shape survives grayscale."""
    if style == "high_contrast":
        hue = float(rng.random())
        bright = _hsv(hue, 1.0, 1.0)
        dark = _hsv((hue + 0.5) % 1.0, 1.0, 0.35)
    else:
        bright = tuple(int(v) for v in rng.integers(165, 256, 3))
        dark = tuple(int(v) for v in rng.integers(0, 90, 3))
    return (bright, dark) if rng.random() < 0.5 else (dark, bright)


def _hsv(hue: float, saturation: float, value: float) -> tuple[int, ...]:
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, saturation, value))


def _draw_content(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    content: str,
    size: tuple[int, int],
    colour: tuple[int, ...],
) -> None:
    width, height = size
    if content == "stripes":
        _draw_stripes(draw, rng, size, colour)
        return
    radius = float(rng.uniform(0.3, 0.45)) * min(size)
    cx = float(rng.uniform(radius, width - radius))
    cy = float(rng.uniform(radius, height - radius))
    if content == "circle":
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    else:
        corners = 4 if content == "square" else 3
        # upright square or upward triangle, tilted a little: learnable from ~100 labels
        upright = math.pi / 4 if content == "square" else -math.pi / 2
        turn = upright + float(rng.uniform(-0.3, 0.3))
        draw.polygon(_regular_polygon(cx, cy, radius, corners, turn), fill=colour)


def _regular_polygon(
    cx: float, cy: float, radius: float, corners: int, turn: float
) -> list[tuple[float, float]]:
    return [
        (cx + radius * math.cos(turn + 2 * math.pi * k / corners),
         cy + radius * math.sin(turn + 2 * math.pi * k / corners))
        for k in range(corners)
    ]  # fmt: skip


def _draw_stripes(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    size: tuple[int, int],
    colour: tuple[int, ...],
) -> None:
    """Parallel bars across the whole image at one of four orientations."""
    width, height = size
    period = min(size) / float(rng.integers(3, 6))
    angle = math.pi / 4 * int(rng.integers(0, 4))
    nx, ny = math.cos(angle), math.sin(angle)
    reach = math.hypot(width, height)
    offset = float(rng.uniform(0, period))
    for k in range(-math.ceil(reach / period), math.ceil(reach / period) + 1):
        t = k * period + offset
        px, py = width / 2 + t * nx, height / 2 + t * ny
        draw.line(
            ((px - reach * ny, py + reach * nx), (px + reach * ny, py - reach * nx)),
            fill=colour,
            width=max(2, round(period / 2)),
        )


def _styled(rng: np.random.Generator, image: Image.Image, style: str) -> Image.Image:
    if style == "gray":
        return image.convert("L").convert("RGB")
    if style == "high_contrast":
        return ImageOps.autocontrast(image)
    return image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(1.2, 1.8))))


def _encoded(image: Image.Image, *, png: bool) -> bytes:
    """PNG or JPEG bytes without metadata, so they depend only on the pixels."""
    buffer = io.BytesIO()
    if png:
        image.save(buffer, "PNG", optimize=False)
    else:
        image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


# --- bad inputs -------------------------------------------------------------------


@dataclass(frozen=True)
class _BadPhotoRows:
    """The photos rows after the good ids, and which of their objects are bad."""

    rows: list[dict]
    object_kinds: dict[str, str]  # object key -> which bad object to write there
    image_keys: tuple[str, ...]  # valid images for rows whose defect is in the row


def _bad_photo_rows(
    rng: np.random.Generator,
    good_rows: list[dict],
    homes: np.ndarray,
    window_start: datetime,
    horizon_s: int,
) -> _BadPhotoRows:
    """Three rows pointing at bad objects, three rows with one defect each, a duplicate id."""
    first = len(good_rows) + 1
    rows = [
        _plausible_photo_row(rng, photo_id, homes, window_start, horizon_s)
        for photo_id in range(first, first + 6)
    ]
    # The fifth row, the missing object, keeps its key: nothing is ever written there.
    truncated, empty, html, dangling, _missing_object, far_north = rows
    dangling["user_id"] = len(homes) + 1
    far_north["latitude"] = 123.4
    original = good_rows[int(rng.integers(0, len(good_rows)))]
    duplicate = {**original, "title": f"{original['title']} (edited)"}
    return _BadPhotoRows(
        rows=[*rows, duplicate],
        object_kinds={
            truncated["object_key"]: "truncated_jpeg",
            empty["object_key"]: "empty",
            html["object_key"]: "html",
        },
        image_keys=(dangling["object_key"], far_north["object_key"]),
    )


def _plausible_photo_row(
    rng: np.random.Generator,
    photo_id: int,
    homes: np.ndarray,
    window_start: datetime,
    horizon_s: int,
) -> dict:
    """A valid-looking row for a photo that is not among the good ones."""
    user_id = int(rng.integers(1, len(homes) + 1))
    posted_at = _at(window_start, rng.integers(0, horizon_s))
    key = _photo_key(photo_id, posted_at, "jpg")
    content = CONTENT_CLASSES[int(rng.integers(0, len(CONTENT_CLASSES)))]
    return _photo_row(rng, photo_id, user_id, key, posted_at, int(homes[user_id - 1]), content)


def _write_bad_objects(sources_dir: Path, rng: np.random.Generator, bad: _BadPhotoRows) -> int:
    """The three bad objects, plus valid images for the rows that are bad only as rows."""
    whole_jpeg = _encoded(_image(rng, "circle", "blurred", (96, 96)), png=False)
    payloads = {
        "truncated_jpeg": whole_jpeg[: len(whole_jpeg) // 2],
        "empty": b"",
        "html": HTML_PAGE,
    }
    for key, kind in bad.object_kinds.items():
        _write_object(sources_dir / key, payloads[kind])
    for key in bad.image_keys:
        image = _image(rng, "square", "high_contrast", (96, 96))
        _write_object(sources_dir / key, _encoded(image, png=False))
    return len(bad.object_kinds) + len(bad.image_keys)


# --- metadata database ------------------------------------------------------------


def _user_rows(rng: np.random.Generator, homes: np.ndarray, window_start: datetime) -> list[dict]:
    """Users who signed up between about a year and a day before the window opens."""
    signed_up_s = rng.integers(SECONDS_PER_DAY, 400 * SECONDS_PER_DAY, len(homes))
    return [
        {
            "user_id": i + 1,
            "created_at": _at(window_start, -int(seconds)),
            "home_city": CITIES[home][0],
        }
        for i, (home, seconds) in enumerate(zip(homes, signed_up_s, strict=True))
    ]


def _photo_rows(
    rng: np.random.Generator,
    posts: _Posts,
    homes: np.ndarray,
    window_start: datetime,
    keys: list[str],
) -> list[dict]:
    return [
        _photo_row(
            rng,
            i + 1,
            int(author),
            keys[i],
            _at(window_start, posts.posted_s[i]),
            int(homes[author - 1]),
            CONTENT_CLASSES[posts.content[i]],
        )
        for i, author in enumerate(posts.authors)
    ]


def _photo_row(
    rng: np.random.Generator,
    photo_id: int,
    user_id: int,
    object_key: str,
    posted_at: datetime,
    city: int,
    content: str,
) -> dict:
    """A photos row located near the author's home city."""
    name, latitude, longitude = CITIES[city]
    jitter = rng.normal(0.0, 0.03, 2)
    return {
        "photo_id": photo_id,
        "user_id": user_id,
        "object_key": object_key,
        "title": _title(rng, content),
        "posted_at": posted_at,
        "latitude": round(latitude + float(jitter[0]), 6),
        "longitude": round(longitude + float(jitter[1]), 6),
        "location_name": name,
    }


def _title(rng: np.random.Generator, content: str) -> str:
    """Two to four words; about half name the content, a weak text feature."""
    words = [str(w) for w in rng.choice(TITLE_WORDS, int(rng.integers(2, 4)), replace=False)]
    if rng.random() < 0.5:
        words.insert(
            int(rng.integers(0, len(words) + 1)),
            str(rng.choice(CONTENT_WORDS[content])),
        )
    return " ".join(words).capitalize()


def _label_rows(
    rng: np.random.Generator, posts: _Posts, window_start: datetime, horizon_s: int
) -> list[dict]:
    """True labels for ~40% of good photos, stratified so every content x style is labelled."""
    combos = posts.content * len(STYLES) + posts.style
    chosen: list[int] = []
    for combo in np.unique(combos):
        members = np.flatnonzero(combos == combo)
        take = max(1, round(LABELLED_SHARE * len(members)))
        chosen.extend(int(i) for i in rng.choice(members, take, replace=False))
    rows = []
    for i in sorted(chosen):
        posted_s = int(posts.posted_s[i])
        wait = 60 + int(rng.uniform(0.1, 1.0) * max(horizon_s - posted_s - 60, 0))
        rows.append(
            {
                "photo_id": i + 1,
                "content_label": CONTENT_CLASSES[posts.content[i]],
                "style_label": STYLES[posts.style[i]],
                "labeled_at": _at(window_start, posted_s + wait),
            }
        )
    return rows


def metadata_tables() -> tuple[sa.MetaData, sa.Table, sa.Table, sa.Table]:
    """The three source tables of the contract: users, photos, photo_labels."""
    metadata = sa.MetaData()
    users = sa.Table(
        "users",
        metadata,
        sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("created_at", TIMESTAMP),
        sa.Column("home_city", sa.Text),
    )
    # No primary key on photo_id: the source holds a duplicate, as real ones do.
    photos = sa.Table(
        "photos",
        metadata,
        sa.Column("photo_id", sa.Integer),
        sa.Column("user_id", sa.Integer),
        sa.Column("object_key", sa.Text),
        sa.Column("title", sa.Text),
        sa.Column("posted_at", TIMESTAMP),
        sa.Column("latitude", sa.Float),
        sa.Column("longitude", sa.Float),
        sa.Column("location_name", sa.Text),
    )
    labels = sa.Table(
        "photo_labels",
        metadata,
        sa.Column("photo_id", sa.Integer),
        sa.Column("content_label", sa.Text),
        sa.Column("style_label", sa.Text),
        sa.Column("labeled_at", TIMESTAMP),
    )
    return metadata, users, photos, labels


def _write_metadata_db(
    url: str, *, users: list[dict], photos: list[dict], labels: list[dict]
) -> int:
    """Drop and recreate the tables; a SQLite file is deleted first so its bytes repeat.

    Labels someone added since (`lakehouse labels import`: rows the demo did not write,
    and their extra columns such as `labeled_by`) are put back over the demo's own
    labels of the same photos, so regenerating the world never loses them. Returns
    how many were kept.
    """
    added = _label_rows_as_stored(url)
    engine = sa.create_engine(_fresh_database_url(url))
    metadata, users_table, photos_table, labels_table = metadata_tables()
    try:
        metadata.drop_all(engine)
        metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(users_table.insert(), users)
            connection.execute(photos_table.insert(), photos)
            connection.execute(labels_table.insert(), labels)
        if not added:
            return 0
        with engine.begin() as connection:
            ours = {_row_key(row) for row in _stored_rows(connection)}
            kept = [row for row in added if _row_key(row) not in ours]
            if not kept:
                return 0
            columns = {c["name"] for c in sa.inspect(connection).get_columns("photo_labels")}
            for name in sorted(set(kept[0]) - columns):
                connection.execute(sa.text(f'ALTER TABLE photo_labels ADD COLUMN "{name}" TEXT'))
            table = sa.table("photo_labels", *(sa.column(name) for name in kept[0]))
            ids = [row["photo_id"] for row in kept]
            connection.execute(table.delete().where(table.c.photo_id.in_(ids)))
            connection.execute(table.insert(), kept)
        return len(kept)
    finally:
        engine.dispose()


def _label_rows_as_stored(url: str) -> list[dict]:
    """photo_labels as it is now, values as the database holds them (none if no table)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        return []
    engine = sa.create_engine(parsed)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("photo_labels"):
                return []
            return _stored_rows(connection)
    finally:
        engine.dispose()


def _stored_rows(connection: sa.Connection) -> list[dict]:
    return [
        dict(row) for row in connection.execute(sa.text("SELECT * FROM photo_labels")).mappings()
    ]


def _row_key(row: dict) -> tuple:
    """A row by every value it holds, extra columns included (an import's labeled_by)."""
    return tuple(sorted((name, str(value)) for name, value in row.items() if value is not None))


def _fresh_database_url(url: str) -> sa.URL:
    """The parsed URL, with any SQLite file behind it removed and its folder created."""
    parsed = sa.make_url(url)
    in_memory = (parsed.database or ":memory:") == ":memory:"
    if parsed.get_backend_name() == "sqlite" and not in_memory:
        path = Path(parsed.database)
        path.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
    return parsed

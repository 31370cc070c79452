"""What an object is, from its bytes: media type and pixel size, or why it is refused."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

import polars as pl
from PIL import Image, UnidentifiedImageError

MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}


@dataclass(frozen=True)
class ObjectProbe:
    """Header facts of an accepted image, or the reason it was rejected."""

    media_type: str | None = None
    width: int | None = None
    height: int | None = None
    reason: str | None = None


def probe_object(data: bytes) -> ObjectProbe:
    """Identify an image from its header, trusting bytes over the key's extension.

    Only the header is parsed: full decoding (and truncation errors) belong to
    the curated `images` layer.
    """
    if not data:
        return ObjectProbe(reason="empty object (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format, (width, height) = image.format, image.size
    except UnidentifiedImageError:
        return ObjectProbe(reason="not an image: bytes match no known image format")
    except Image.DecompressionBombError as exc:
        return ObjectProbe(reason=f"decompression bomb: {exc}")
    except (OSError, SyntaxError, ValueError) as exc:
        return ObjectProbe(reason=f"unreadable image header: {exc}")
    media_type = MEDIA_TYPES.get(image_format or "")
    if media_type is None:
        return ObjectProbe(reason=f"unsupported image format {image_format}")
    if width <= 0 or height <= 0:
        return ObjectProbe(reason=f"zero-size image ({width}x{height})")
    return ObjectProbe(media_type=media_type, width=width, height=height)


UTC_TS = pl.Datetime("us", "UTC")
RAW_OBJECTS_SCHEMA: dict[str, pl.DataType] = {
    "key": pl.String(),
    "sha256": pl.String(),
    "size": pl.Int64(),
    "media_type": pl.String(),
    "width": pl.Int64(),
    "height": pl.Int64(),
    "first_seen": UTC_TS,
    "last_seen": UTC_TS,
    "status": pl.String(),
}
OBJECT_KEY = ["key", "sha256"]


def registry_changes(
    registry: pl.DataFrame, current: pl.DataFrame, source_keys: pl.Series, now: datetime
) -> pl.DataFrame:
    """Rows of `raw_objects` that must change so that it describes `current`.

    One row per object version (key, sha256). A version seen for the first time
    is inserted as `current`; one that left the source becomes `replaced` (its
    key, among `source_keys`, now has other bytes) or `deleted` (its key is gone), with `last_seen`
    set; one that comes back is `current` again. Unchanged versions yield no row.
    """
    new = current.join(registry, on=OBJECT_KEY, how="anti").with_columns(
        first_seen=pl.lit(now, UTC_TS), last_seen=pl.lit(None, UTC_TS), status=pl.lit("current")
    )
    back = (
        registry.filter(pl.col("status") != "current")
        .join(current.select(OBJECT_KEY), on=OBJECT_KEY, how="semi")
        .with_columns(last_seen=pl.lit(None, UTC_TS), status=pl.lit("current"))
    )
    gone = (
        registry.filter(pl.col("status") == "current")
        .join(current.select(OBJECT_KEY), on=OBJECT_KEY, how="anti")
        .with_columns(
            last_seen=pl.lit(now, UTC_TS),
            status=pl.when(pl.col("key").is_in(source_keys.implode()))
            .then(pl.lit("replaced"))
            .otherwise(pl.lit("deleted")),
        )
    )
    return pl.concat(
        [
            frame.select(list(RAW_OBJECTS_SCHEMA)).cast(RAW_OBJECTS_SCHEMA)
            for frame in (new, back, gone)
        ]
    )

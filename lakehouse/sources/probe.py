"""What an object is, from its bytes, read once: its SHA-256 and its image header.

Plain functions over bytes and keys, importing neither Dagster nor polars: a spawned
hashing worker imports only this module (hashlib, PIL, the object read).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from lakehouse.failpoints import failpoint
from lakehouse.resources.reads import read_object

MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
ACCEPTED = tuple(MEDIA_TYPES)


@dataclass(frozen=True)
class ObjectProbe:
    """Header facts of an accepted image, or the reason it was rejected."""

    media_type: str | None = None
    width: int | None = None
    height: int | None = None
    reason: str | None = None


def probe_object(data: bytes) -> ObjectProbe:
    """Identify an image from its header, trusting bytes over the key's extension.

    Only the header is parsed: full decoding (and truncation errors) belong to the
    curated `images` layer. PIL first tries only the formats we accept (a few µs for
    a JPEG or PNG); bytes that are neither go through every format PIL knows, so a
    GIF is still named as such in its rejection.
    """
    if not data:
        return ObjectProbe(reason="empty object (0 bytes)")
    try:
        try:
            image = Image.open(io.BytesIO(data), formats=ACCEPTED)
        except UnidentifiedImageError:
            image = Image.open(io.BytesIO(data))
        with image:
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


Facts = tuple[str, tuple[str | None, int | None, int | None, str | None] | None]


def hash_and_probe(data: bytes, probe: bool) -> Facts:
    """(sha256, probe facts or None) of one object's bytes."""
    if not probe:
        return hashlib.sha256(data).hexdigest(), None
    found = probe_object(data)
    facts = (found.media_type, found.width, found.height, found.reason)
    return hashlib.sha256(data).hexdigest(), facts


def read_hash_probe(store_uri: str, keys: Sequence[str], probe: bool) -> list[Facts]:
    """Read each object once: its SHA-256 and, if asked, its header probe from the same
    bytes. What a hashing worker runs on a chunk of keys."""
    found = []
    for key in keys:
        failpoint("hash/object")
        found.append(hash_and_probe(read_object(store_uri, key), probe))
    return found

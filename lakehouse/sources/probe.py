"""What an object is, from its bytes, read once: its SHA-256 and its image header.

Plain functions over bytes and keys, importing neither Dagster nor polars: a spawned
hashing worker imports only this module (hashlib, PIL, the object read).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from lakehouse.failpoints import failpoint, failpoints_armed
from lakehouse.resources.keys import UnsafeKeyError, checked_key, open_below, resolved_root
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


# JPEG markers whose segments PIL's open only stores or skips (DHT, DRI, COM, APP3-APP13,
# APP15) or checks as below (SOF0-2, DQT, APP0, APP1, APP2, APP14); any other marker, and
# the APP contents PIL parses further (EXIF, MPF, ICC, Photoshop), go to PIL itself
JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2))
JPEG_STORED = frozenset((0xC4, 0xDD, 0xFE, *range(0xE3, 0xED), 0xEF))
# the (bit depth, colour type) pairs a PNG IHDR may hold
PNG_MODES = frozenset(
    [(1, 0), (2, 0), (4, 0), (8, 0), (16, 0), (8, 2), (16, 2), (1, 3), (2, 3), (4, 3), (8, 3)]
    + [(8, 4), (16, 4), (8, 6), (16, 6)]
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a plain JPEG whose markers up to the scan are all well formed,
    as PIL would read them; None for anything PIL must judge itself. Segments are read
    in place (indices into `data`, no copies): this runs once per photo."""
    if not data.startswith(b"\xff\xd8\xff"):
        return None
    pos, end, size = 2, len(data), None
    while pos + 4 <= end and data[pos] == 0xFF:
        marker = data[pos + 1]
        length = (data[pos + 2] << 8) | data[pos + 3]
        nxt = pos + 2 + length
        if length < 2 or nxt > end:
            return None
        if marker in JPEG_STORED:
            pos = nxt
            continue
        if marker == 0xDA:  # start of scan, read whole: PIL stops here
            return size
        start, count = pos + 4, length - 2  # the segment: data[start:nxt], count bytes
        if marker in JPEG_SOF:
            if count < 6 or (count - 6) % 3 or data[start] != 8 or data[start + 5] not in (1, 3, 4):
                return None
            size = (
                (data[start + 3] << 8) | data[start + 4],
                (data[start + 1] << 8) | data[start + 2],
            )
        elif marker == 0xDB:  # quantization tables: PIL parses each
            while start < nxt:
                start += 1 + (64 if data[start] < 16 else 128)
                if start > nxt:
                    return None
        elif marker == 0xE0:
            if count < 7 and data.startswith(b"JFIF", start, nxt):
                return None
        elif marker in (0xE1, 0xE2):
            if data.startswith((b"Exif\0\0", b"MPF\0", b"ICC_PROFILE\0"), start, nxt):
                return None
        elif marker == 0xEE:
            if count < 7 and data.startswith(b"Adobe", start, nxt):
                return None
        else:
            return None
        pos = nxt
    return None


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG whose IHDR is whole, valid and checksummed and is followed
    directly by image data, as PIL would read it; None for anything PIL must judge."""
    if len(data) < 41 or not data.startswith(PNG_SIGNATURE) or data[8:16] != b"\x00\x00\x00\rIHDR":
        return None
    header = data[16:29]
    if (header[8], header[9]) not in PNG_MODES or header[11] != 0:
        return None
    if zlib.crc32(data[12:29]) != int.from_bytes(data[29:33], "big") or data[37:41] != b"IDAT":
        return None
    return int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")


def header_facts(data: bytes) -> tuple[str, int, int] | None:
    """(media type, width, height) of a plain JPEG or PNG from its header bytes (a few
    µs, no PIL); None where PIL must decide (any other bytes, an unusual header, a size
    near the bomb limit)."""
    if data[:1] == b"\xff":
        media_type, size = "image/jpeg", jpeg_size(data)
    elif data[:1] == b"\x89":
        media_type, size = "image/png", png_size(data)
    else:
        return None
    if size is None:
        return None
    width, height = size
    limit = Image.MAX_IMAGE_PIXELS
    if width <= 0 or height <= 0 or (limit is not None and width * height > limit):
        return None
    return media_type, width, height


def header_probe(data: bytes) -> ObjectProbe | None:
    """`header_facts` as a probe."""
    facts = header_facts(data)
    return None if facts is None else ObjectProbe(*facts)


def probe_object(data: bytes) -> ObjectProbe:
    """Identify an image from its header, trusting bytes over the key's extension.

    Only the header is parsed: full decoding (and truncation errors) belong to the
    curated `images` layer. A plain JPEG or PNG is read from its header bytes
    (`header_probe`); everything else, refusals included, goes to PIL (`pil_probe`),
    so every reason is PIL's.
    """
    return header_probe(data) or pil_probe(data)


def pil_probe(data: bytes) -> ObjectProbe:
    """The probe by PIL: the formats we accept first (a few µs for a JPEG or PNG), then
    every format PIL knows, so a GIF is still named as such in its rejection."""
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
    sha256 = hashlib.sha256(data).hexdigest()
    if not probe:
        return sha256, None
    header = header_facts(data)  # as probe_object, without an object per photo
    if header is not None:
        return sha256, (*header, None)
    found = pil_probe(data)
    return sha256, (found.media_type, found.width, found.height, found.reason)


def read_hash_probe(store_uri: str, keys: Sequence[str], probe: bool) -> list[Facts]:
    """Read each object once: its SHA-256 and, if asked, its header probe from the same
    bytes. What a hashing worker runs on a chunk of keys."""
    found = []
    for key in keys:
        failpoint("hash/object")
        found.append(hash_and_probe(read_object(store_uri, key), probe))
    return found


# a listed file is opened by its name in its (checked) directory, never through a link
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_folder(root: str, folder: str) -> int:
    """A descriptor of `folder` (a key prefix) below the local store `root`, checked once
    as `open_below` checks a file: its real path, from the kernel, lies below `root`."""
    if not folder:
        return os.open(resolved_root(root), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return open_below(root, folder)


def read_listed(root: str, folder: int, key: str, name: str) -> tuple[bytes, os.stat_result]:
    """All bytes of the listed file `name` in the open folder `folder`, and its stat from
    the open file (so the stamp is that of the bytes read). The name has no `/`, and
    O_NOFOLLOW refuses a link put in its place since the listing (listings never name
    links), so what is read is the file below `root` that the key names."""
    try:
        descriptor = os.open(name, FILE_FLAGS, dir_fd=folder)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            link = f"key {key!r} is now a symbolic link below {root!r}: refused"
            raise UnsafeKeyError(link) from exc
        raise
    try:
        stat = os.fstat(descriptor)
        # one read when the size is the one just seen; a file that grew is read to its end
        data = os.read(descriptor, stat.st_size + 1)
        if len(data) != stat.st_size:
            while chunk := os.read(descriptor, 1 << 20):
                data += chunk
        return data, stat
    finally:
        os.close(descriptor)


def by_folder(keys: Sequence[str]) -> Iterator[tuple[str, list[int]]]:
    """(folder, positions of its keys) for each run of `keys` in one folder, in order (a
    sorted listing keeps each folder's keys together)."""
    folder, run = "", []
    for position, key in enumerate(keys):
        here = key.rpartition("/")[0]
        if here != folder and run:
            yield folder, run
            run = []
        folder = here
        run.append(position)
    if run:
        yield folder, run


@dataclass
class ScannedFiles:
    """What `scan_local` saw of its files, as columns (no object per file, cheap to pickle
    from a worker): size and mtime of each; whether it was read now; for a file read, its
    SHA-256 (32 bytes at its place in `digests`, zeros where not read) and header facts:
    `kinds` 1 for a JPEG and 2 for a PNG judged from the header (size in `widths` and
    `heights`), 3 for one PIL judged (its facts in `judged`), 0 if not read or probed."""

    sizes: array
    mtimes: array
    read: bytearray
    digests: bytearray
    kinds: bytearray
    widths: array
    heights: array
    judged: dict[int, tuple[str | None, int | None, int | None, str | None]]


KINDS = {"image/jpeg": 1, "image/png": 2}
JUDGED = 3
NO_DIGEST = bytes(32)


def scan_local(
    root: str, keys: Sequence[str], known: Sequence[str | None], probe: bool
) -> ScannedFiles:
    """Look at the listed files `keys` of the local store `root`: a file whose stamp is
    its `known` one (the cache's) is only stat'ed; any other is read once, for its
    SHA-256 and (if asked) its header probe. Each folder is opened and checked once and
    each file opened by name in it (`O_NOFOLLOW`: a link put in its place since the
    listing is refused), since for a few-kB photo a path walk and check per file cost
    more than hashing it. The loop is what a hashing worker process spends its time on,
    so it calls no function per file beyond the read (`read_listed`), the hash and the
    probe."""
    found = ScannedFiles(
        array("q"), array("q"), bytearray(), bytearray(), bytearray(), array("q"), array("q"), {}
    )
    sizes, mtimes, read, digests = found.sizes, found.mtimes, found.read, found.digests
    kinds, widths, heights = found.kinds, found.widths, found.heights
    sha256 = hashlib.sha256
    watched = failpoints_armed()
    for folder, positions in by_folder(keys):
        descriptor = open_folder(root, folder)
        cut = len(folder) + 1 if folder else 0
        try:
            for position in positions:
                key = keys[position]
                name = key[cut:]
                if name == ".." or "/" in name or "\x00" in name:  # (each folder is checked)
                    checked_key(root, key)
                stamp = known[position]
                if stamp is not None:
                    stat = os.stat(name, dir_fd=descriptor, follow_symlinks=False)
                    if f"{stat.st_size}:{stat.st_mtime_ns}" == stamp:
                        sizes.append(stat.st_size)
                        mtimes.append(stat.st_mtime_ns)
                        read.append(0)
                        digests += NO_DIGEST
                        kinds.append(0)
                        widths.append(0)
                        heights.append(0)
                        continue
                if watched:
                    failpoint("hash/object")
                data, stat = read_listed(root, descriptor, key, name)
                sizes.append(stat.st_size)
                mtimes.append(stat.st_mtime_ns)
                read.append(1)
                digests += sha256(data).digest()
                if not probe:
                    kinds.append(0)
                    widths.append(0)
                    heights.append(0)
                    continue
                header = header_facts(data)
                if header is None:
                    judged = pil_probe(data)
                    found.judged[len(kinds)] = (
                        judged.media_type,
                        judged.width,
                        judged.height,
                        judged.reason,
                    )
                    kinds.append(JUDGED)
                    widths.append(0)
                    heights.append(0)
                else:
                    kinds.append(KINDS[header[0]])
                    widths.append(header[1])
                    heights.append(header[2])
        finally:
            os.close(descriptor)
    return found

"""Incremental content hashing of source objects, with the cache kept in the lake.

An object whose size and mtime/etag are unchanged since the last look is not
read again; its SHA-256 comes from the `_object_hashes` Delta table. New and
changed objects are hashed in parallel threads (hashlib and I/O release the GIL),
except small local files: for those a thread handoff costs more than the hashing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from lakehouse.failpoints import failpoint
from lakehouse.lake import LakeResource
from lakehouse.resources.object_store import ObjectInfo, ObjectStoreResource
from lakehouse.settings import is_s3

HASH_CACHE_TABLE = "_object_hashes"
HASH_SCHEMA = {"key": pl.String, "size": pl.Int64, "stamp": pl.String, "sha256": pl.String}
INLINE_HASH_BYTES = 1 << 20
Inspect = Callable[[bytes], Any]


def hashing_threads() -> int:
    return max(2, min(16, (os.cpu_count() or 2) * 2))


@dataclass(frozen=True)
class Hashed:
    """Hashes of every listed object, and what `inspect` said of those read just now."""

    objects: pl.DataFrame
    hashed_now: int
    inspected: dict[str, Any] = field(default_factory=dict)


def read_object(store: ObjectStoreResource, key: str, inspect: Inspect | None) -> tuple[str, Any]:
    """SHA-256 of an object and, in the same single read, `inspect` of its bytes."""
    failpoint("hash/object")
    if inspect is None:
        return store.sha256(key), None
    data = store.read(key)
    return hashlib.sha256(data).hexdigest(), inspect(data)


def read_objects(
    store: ObjectStoreResource, stale: pl.DataFrame, inspect: Inspect | None
) -> dict[str, tuple[str, Any]]:
    """(sha256, inspection) by key of the `stale` (key, size) objects.

    Local objects under INLINE_HASH_BYTES are read in this thread: threads
    only pay off for big files or remote reads, where the work is GIL-free.
    """
    inline = pl.lit(False) if is_s3(store.uri) else pl.col("size") < INLINE_HASH_BYTES
    small = stale.filter(inline).get_column("key").to_list()
    large = stale.filter(~inline).get_column("key").to_list()
    results = {key: read_object(store, key, inspect) for key in small}
    if large:
        with ThreadPoolExecutor(hashing_threads()) as pool:
            found = pool.map(lambda key: read_object(store, key, inspect), large)
            results.update(zip(large, found, strict=True))
    return results


def listing_frame(objects: list[ObjectInfo]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "key": [o.key for o in objects],
            "size": [o.size for o in objects],
            "stamp": [o.stamp for o in objects],
        },
        schema={k: v for k, v in HASH_SCHEMA.items() if k != "sha256"},
    )


def object_hashes(
    store: ObjectStoreResource,
    lake: LakeResource,
    prefix: str,
    commit_info: dict[str, str],
    inspect: Inspect | None = None,
) -> Hashed:
    """(key, size, stamp, sha256) of every object under `prefix`, and how many were read.

    Only objects absent from the cache or whose stamp changed are read; their
    hashes are merged into the cache in one commit (none when nothing changed).
    `inspect`, if given, sees the bytes of each object read, so callers that
    need the content too (probing images) do not read it twice.
    """
    listing = listing_frame(store.list(prefix))
    cached = lake.read_or_empty(HASH_CACHE_TABLE, HASH_SCHEMA)
    known = listing.join(cached.select("key", "stamp", "sha256"), on=["key", "stamp"], how="left")
    stale_rows = known.filter(pl.col("sha256").is_null())
    stale = stale_rows.get_column("key").to_list()
    results = read_objects(store, stale_rows, inspect)
    fresh = {key: sha for key, (sha, _) in results.items()}
    hashed = (
        known.with_columns(
            pl.col("sha256").fill_null(pl.col("key").replace_strict(fresh, default=None))
        )
        if fresh
        else known
    )
    if fresh:
        lake.upsert(
            HASH_CACHE_TABLE,
            hashed.filter(pl.col("key").is_in(stale)).select(list(HASH_SCHEMA)),
            key=["key"],
            commit_info=commit_info,
        )
    inspected = {key: found for key, (_, found) in results.items()} if inspect else {}
    return Hashed(hashed.select(list(HASH_SCHEMA)), len(stale), inspected)

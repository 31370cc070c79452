"""Incremental content hashing of source objects, with the cache kept in the lake.

An object whose size and mtime/etag are unchanged since the last look is not
read again; its SHA-256 comes from the `_object_hashes` Delta table. New and
changed objects are hashed in parallel threads (hashlib and I/O release the GIL),
except small local files: for those a thread handoff costs more than the hashing.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from lakehouse.resources.lake import LakeResource
from lakehouse.resources.object_store import ObjectInfo, ObjectStoreResource
from lakehouse.settings import is_s3

HASH_CACHE_TABLE = "_object_hashes"
HASH_SCHEMA = {"key": pl.String, "size": pl.Int64, "stamp": pl.String, "sha256": pl.String}
INLINE_HASH_BYTES = 1 << 20


def hashing_threads() -> int:
    return max(2, min(16, (os.cpu_count() or 2) * 2))


def hash_objects(store: ObjectStoreResource, stale: pl.DataFrame) -> dict[str, str]:
    """SHA-256 by key of the `stale` (key, size) objects.

    Local objects under INLINE_HASH_BYTES are hashed in this thread: threads
    only pay off for big files or remote reads, where the work is GIL-free.
    """
    inline = pl.lit(False) if is_s3(store.uri) else pl.col("size") < INLINE_HASH_BYTES
    small = stale.filter(inline).get_column("key").to_list()
    large = stale.filter(~inline).get_column("key").to_list()
    hashes = {key: store.sha256(key) for key in small}
    if large:
        with ThreadPoolExecutor(hashing_threads()) as pool:
            hashes.update(zip(large, pool.map(store.sha256, large), strict=True))
    return hashes


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
) -> tuple[pl.DataFrame, int]:
    """(key, size, stamp, sha256) of every object under `prefix`, and how many were read.

    Only objects absent from the cache or whose stamp changed are read; their
    hashes are merged into the cache in one commit (none when nothing changed).
    """
    listing = listing_frame(store.list(prefix))
    cached = lake.read(HASH_CACHE_TABLE, filters=None)
    if cached is None:
        cached = pl.DataFrame(schema=HASH_SCHEMA)
    known = listing.join(cached.select("key", "stamp", "sha256"), on=["key", "stamp"], how="left")
    stale_rows = known.filter(pl.col("sha256").is_null())
    stale = stale_rows.get_column("key").to_list()
    fresh = hash_objects(store, stale_rows)
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
    return hashed.select(list(HASH_SCHEMA)), len(stale)

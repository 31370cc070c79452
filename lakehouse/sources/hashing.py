"""Incremental content hashing of source objects, with the cache kept in the lake.

An object whose size and mtime/etag are unchanged since the last look is not
read again; its SHA-256 (and, for photos, its header probe, taken from the same
bytes) comes from the `_object_hashes` Delta table. New and changed objects are
read once each: big or remote ones in threads (hashlib and I/O release the GIL),
many small local files in spawned worker processes that import neither Dagster
nor polars (`lakehouse.sources.probe`), a few small ones inline.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl

from lakehouse.lake import LakeResource
from lakehouse.progress import Progress
from lakehouse.resources.object_store import ObjectInfo, ObjectStoreResource
from lakehouse.settings import is_s3
from lakehouse.sources.probe import Facts, read_hash_probe

HASH_CACHE_TABLE = "_object_hashes"
HASH_SCHEMA = {"key": pl.String, "size": pl.Int64, "stamp": pl.String, "sha256": pl.String}
# a photo's header facts, from the bytes that were hashed (null: not probed)
PROBE_SCHEMA = {
    "probed": pl.Boolean,
    "media_type": pl.String,
    "width": pl.Int64,
    "height": pl.Int64,
    "reason": pl.String,
}
CACHE_SCHEMA = {**HASH_SCHEMA, **PROBE_SCHEMA}
INLINE_HASH_BYTES = 1 << 20
# small local objects: below this many, spawning workers (~0.5 s) costs more than it saves
PROCESSES_FROM = 20_000
KEYS_PER_TASK = 1024
Sink = Callable[[str], None]


def hashing_threads() -> int:
    return max(2, min(16, (os.cpu_count() or 2) * 2))


def hashing_processes() -> int:
    return max(1, min(8, os.cpu_count() or 1))


@dataclass(frozen=True)
class Hashed:
    """Hashes (and probe facts, where taken) of every listed object; how many were read."""

    objects: pl.DataFrame
    hashed_now: int


def chunks(keys: Sequence[str], size: int) -> Iterator[list[str]]:
    iterator = iter(keys)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def read_objects(
    store: ObjectStoreResource,
    stale: pl.DataFrame,
    probe: bool,
    progress: Callable[[int], None] = lambda n: None,
) -> dict[str, Facts]:
    """(sha256, probe facts) by key of the `stale` (key, size) objects, each read once.

    Big local and all remote objects go to threads (the work releases the GIL); many
    small local files go to worker processes in chunks, since opening, reading and
    probing a 4 kB file is mostly Python; a few are read inline.
    """
    inline = pl.lit(False) if is_s3(store.uri) else pl.col("size") < INLINE_HASH_BYTES
    small = stale.filter(inline).get_column("key").to_list()
    large = stale.filter(~inline).get_column("key").to_list()
    results: dict[str, Facts] = {}
    workers = hashing_processes()
    if len(small) >= PROCESSES_FROM and workers > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            parts = list(chunks(small, KEYS_PER_TASK))
            found = pool.map(
                read_hash_probe, itertools.repeat(store.uri), parts, itertools.repeat(probe)
            )
            for part, facts in zip(parts, found, strict=True):
                results.update(zip(part, facts, strict=True))
                progress(len(part))
    else:
        for keys in chunks(small, KEYS_PER_TASK):
            results.update(zip(keys, read_hash_probe(store.uri, keys, probe), strict=True))
            progress(len(keys))
    if large:
        with ThreadPoolExecutor(hashing_threads()) as pool:
            found = pool.map(lambda key: read_hash_probe(store.uri, [key], probe)[0], large)
            results.update(zip(large, found, strict=True))
            progress(len(large))
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


def cached_hashes(lake: LakeResource) -> pl.DataFrame:
    """The cache's rows, probe columns included (null in a cache written before they
    existed)."""
    cached = lake.read_or_empty(HASH_CACHE_TABLE, CACHE_SCHEMA)
    missing = [
        pl.lit(None, kind).alias(name)
        for name, kind in CACHE_SCHEMA.items()
        if name not in cached.columns
    ]
    return cached.with_columns(missing).select(list(CACHE_SCHEMA))


def facts_frame(results: dict[str, Facts]) -> pl.DataFrame:
    """Read results as (key, sha256, probe columns)."""
    blank = (None, None, None, None)
    rows = [
        (key, sha, facts is not None, *(facts or blank)) for key, (sha, facts) in results.items()
    ]
    return pl.DataFrame(
        rows, schema={"key": pl.String, "sha256": pl.String, **PROBE_SCHEMA}, orient="row"
    )


def object_hashes(
    store: ObjectStoreResource,
    lake: LakeResource,
    prefix: str,
    commit_info: dict[str, str],
    *,
    probe: bool = False,
    log: Sink | None = None,
) -> Hashed:
    """(key, size, stamp, sha256, probe columns) of every object under `prefix`, and how
    many were read now.

    Only objects absent from the cache or whose stamp changed are read; with `probe`,
    so is a cached photo never probed. Each is read once: its hash and (with `probe`)
    its header facts come from the same bytes and go into the cache in one commit
    (none when nothing was read), so the registry step after the observation reads
    nothing again. `log` gets steady progress lines.
    """
    listing = listing_frame(store.list(prefix))
    cached = cached_hashes(lake)
    known = listing.join(cached.drop("size"), on=["key", "stamp"], how="left")
    needs_read = pl.col("sha256").is_null()
    if probe:
        needs_read = needs_read | pl.col("probed").is_null()
    stale = known.filter(needs_read)
    if stale.is_empty():
        return Hashed(known.select(list(CACHE_SCHEMA)), 0)
    with Progress("hashing", stale.height, log or (lambda line: None), unit="objects") as progress:
        results = read_objects(store, stale.select("key", "size"), probe, progress.advance)
    fresh = stale.select("key", "size", "stamp").join(facts_frame(results), on="key")
    lake.upsert(
        HASH_CACHE_TABLE, fresh.select(list(CACHE_SCHEMA)), key=["key"], commit_info=commit_info
    )
    hashed = pl.concat(
        [known.filter(~needs_read).select(list(CACHE_SCHEMA)), fresh.select(list(CACHE_SCHEMA))]
    )
    return Hashed(hashed.sort("key"), stale.height)

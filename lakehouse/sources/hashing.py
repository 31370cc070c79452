"""Incremental content hashing of source objects, with the cache kept in the lake.

An object whose size and mtime/etag are unchanged since the last look is not
read again; its SHA-256 (and, for photos, its header probe, taken from the same
bytes) comes from the `_object_hashes` Delta table. New and changed objects are
read once each. A local store is listed by name; each file's stat, its comparison
with the cached stamp and, if it changed, its read happen together, from 20k files in
this process and worker processes started as `python -m lakehouse.sources.read_worker`
(not by multiprocessing, whose children import the parent's `__main__`: Dagster and
more), which import neither Dagster nor polars; what they saw comes back as columns,
and the frame is built from them with no Python object per file. Remote objects are
listed with their etags and read in threads (I/O and hashlib release the GIL).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

import lakehouse
from lakehouse.lake import LakeResource
from lakehouse.progress import Progress
from lakehouse.resources.object_store import Listing, ObjectStoreResource
from lakehouse.settings import is_s3
from lakehouse.sources.probe import KINDS, Facts, ScannedFiles, read_hash_probe, scan_local

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
# small local objects: below this many, this process reads them alone (~10 µs each): a
# worker process costs ~60-70 ms of CPU to start (interpreter and imports), which at
# 10k files gained nothing on a busy machine (+5-9 µs of CPU a file, slower runs)
PROCESSES_FROM = 20_000
KEYS_PER_TASK = 1024  # parts this process reads itself too, shared with workers
KEYS_PER_PART = 10_000  # what a worker process is asked for at a time (progress steps)
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


def worker_env() -> dict[str, str]:
    """This process's environment, with the folder this `lakehouse` package came from
    first on the path, so a worker runs the same code as its parent."""
    package_home = os.path.dirname(os.path.dirname(os.path.abspath(lakehouse.__file__)))
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([package_home, *([path] if path else [])])}


class ReadWorker:
    """One `lakehouse.sources.read_worker` process, asked for one part of the keys at a
    time; its error, if it raised one, is raised here."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lakehouse.sources.read_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=worker_env(),
        )

    def scan(
        self, root: str, keys: list[str], known: list[str | None], probe: bool
    ) -> ScannedFiles:
        requests, answers = self.process.stdin, self.process.stdout
        assert requests is not None and answers is not None
        try:
            pickle.dump((root, keys, known, probe), requests, protocol=pickle.HIGHEST_PROTOCOL)
            requests.flush()
            ok, answer = pickle.load(answers)
        except (BrokenPipeError, EOFError) as exc:
            status = self.process.wait()
            raise RuntimeError(
                f"hashing worker exited with status {status} reading {len(keys)} objects "
                f"from {keys[0]!r}"
            ) from exc
        if not ok:
            raise answer
        return answer

    def close(self) -> None:
        """End the worker: it exits at the end of its input (or, were it still writing
        an answer nobody reads, on the closed pipe) and is waited for."""
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()
        self.process.wait()


def joined(parts: list[ScannedFiles]) -> ScannedFiles:
    """The scans of consecutive parts of the keys as one (the first one, extended)."""
    whole, *rest = parts
    for part in rest:
        offset = len(whole.kinds)
        whole.judged.update({offset + i: facts for i, facts in part.judged.items()})
        for name in ("sizes", "mtimes", "read", "digests", "kinds", "widths", "heights"):
            getattr(whole, name).extend(getattr(part, name))
    return whole


def scan_local_files(
    root: str,
    keys: list[str],
    known: list[str | None],
    probe: bool,
    workers: int,
    progress: Callable[[int], None],
    here: bool = False,
) -> ScannedFiles:
    """`scan_local` over `keys` (with their known stamps), in order: in this process, or
    in parts shared by `workers` processes and, with `here`, by this thread too (it
    starts at once, while the workers start: each costs ~60 ms of interpreter and
    imports, and a worker's answer costs a pickle this thread's own parts do not)."""
    step = KEYS_PER_TASK if workers < 1 or here else KEYS_PER_PART
    parts = [slice(start, start + step) for start in range(0, len(keys), step)]
    if workers < 1:
        found = []
        for part in parts:
            found.append(scan_local(root, keys[part], known[part], probe))
            progress(len(keys[part]))
        return joined(found) if found else scan_local(root, [], [], probe)
    answers: dict[int, ScannedFiles] = {}
    todo, lock, stop = iter(enumerate(parts)), threading.Lock(), threading.Event()
    # parts done (their sizes), or the error a worker's thread raised
    finished: queue.SimpleQueue[int | BaseException] = queue.SimpleQueue()
    claimed = threading.Semaphore(0)

    def next_part() -> tuple[int, slice]:
        with lock:
            return next(todo, (-1, slice(0)))

    def drain() -> None:
        number, part = next_part()  # a first part each, before this thread takes any
        claimed.release()
        if number < 0:
            return
        worker = None
        try:
            worker = ReadWorker()
            while number >= 0 and not stop.is_set():
                answers[number] = worker.scan(root, keys[part], known[part], probe)
                finished.put(len(answers[number].kinds))
                number, part = next_part()
        except BaseException as exc:
            finished.put(exc)
        finally:
            if worker is not None:
                worker.close()

    def report(done: int | BaseException) -> None:
        if isinstance(done, BaseException):
            raise done
        progress(done)  # from this thread: a step's log is not written from others

    threads = [threading.Thread(target=drain) for _ in range(min(workers, len(parts)))]
    for thread in threads:
        thread.start()
    for _ in threads:
        claimed.acquire()
    reported = 0
    try:
        while here and (number_part := next_part())[0] >= 0:
            number, part = number_part
            answers[number] = scan_local(root, keys[part], known[part], probe)
            finished.put(len(answers[number].kinds))
            while not finished.empty():
                report(finished.get())
                reported += 1
        while reported < len(parts):
            report(finished.get())
            reported += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return joined([answers[n] for n in range(len(parts))])


SCAN_SCHEMA = {
    "key": pl.String,
    "size": pl.Int64,
    "stamp": pl.String,
    "read": pl.Boolean,
    "sha256": pl.String,
    **PROBE_SCHEMA,
}


def scanned_frame(keys: list[str], scanned: ScannedFiles, probe: bool) -> pl.DataFrame:
    """(key, size, stamp, read, sha256, probe columns) of a scan, built from its columns
    (no Python object per file): the stamp is `size:mtime_ns`, as the listing gives it;
    sha256 and the probe columns are null where the file was not read now."""
    count = len(keys)
    digests = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(32), count, [None, pa.py_buffer(scanned.digests)]
    )
    judged = pl.DataFrame(
        [(i, *facts) for i, facts in scanned.judged.items()],
        schema={
            "i": pl.UInt32,
            "j_media": pl.String,
            "j_width": pl.Int64,
            "j_height": pl.Int64,
            "reason": pl.String,
        },
        orient="row",
    )
    kind, read = pl.col("kind"), pl.col("read")
    from_header = kind.is_in(list(KINDS.values()))
    media = pl.lit(None, pl.String)
    for media_type, code in KINDS.items():
        media = pl.when(kind == code).then(pl.lit(media_type)).otherwise(media)
    frame = (
        pl.DataFrame(
            {
                "key": pl.Series(keys, dtype=pl.String),
                "size": np.frombuffer(scanned.sizes, np.int64),
                "mtime": np.frombuffer(scanned.mtimes, np.int64),
                "read": np.frombuffer(scanned.read, np.uint8).astype(bool),
                "digest": pl.from_arrow(digests),
                "kind": np.frombuffer(scanned.kinds, np.uint8),
                "width": np.frombuffer(scanned.widths, np.int64),
                "height": np.frombuffer(scanned.heights, np.int64),
            }
        )
        .with_row_index("i")
        .join(judged, on="i", how="left", maintain_order="left")
    )
    return frame.select(
        "key",
        "size",
        stamp=pl.concat_str(pl.col("size"), pl.lit(":"), pl.col("mtime")),
        read="read",
        sha256=pl.when(read).then(pl.col("digest").bin.encode("hex")),
        probed=read & probe,
        media_type=pl.coalesce(media, "j_media"),
        width=pl.coalesce(pl.when(from_header).then("width"), "j_width"),
        height=pl.coalesce(pl.when(from_header).then("height"), "j_height"),
        reason="reason",
    ).cast(SCAN_SCHEMA)  # type: ignore[arg-type]


def scan_objects(
    store: ObjectStoreResource,
    keys: list[str],
    known: list[str | None],
    probe: bool,
    progress: Callable[[int], None] = lambda n: None,
    workers: int | None = None,
) -> pl.DataFrame:
    """`scanned_frame` of the local store's files `keys`, each stat'ed and, unless its
    stamp is its `known` one, read once. Their cost is mostly Python (a 2-4 kB photo):
    a few stay in this process; from `PROCESSES_FROM` files this process reads with
    `hashing_processes() - 1` worker processes (one per other core). `workers` asks for
    that many worker processes, and this process only waits for them."""
    here = workers is None
    if workers is None:
        workers = hashing_processes() - 1 if len(keys) >= PROCESSES_FROM else 0
    scanned = scan_local_files(store.uri, keys, known, probe, workers, progress, here)
    return scanned_frame(keys, scanned, probe)


def read_objects(
    store: ObjectStoreResource,
    keys: list[str],
    probe: bool,
    progress: Callable[[int], None] = lambda n: None,
) -> list[Facts]:
    """(sha256, probe facts) of the remote objects `keys`, each read once, in threads
    (the work is I/O and hashing, which release the GIL)."""
    with ThreadPoolExecutor(hashing_threads()) as pool:
        found = list(pool.map(lambda key: read_hash_probe(store.uri, [key], probe)[0], keys))
    progress(len(keys))
    return found


def listing_frame(listing: Listing) -> pl.DataFrame:
    """(key, size, stamp) of the listed objects, sorted by key (so each folder's files
    are read together)."""
    return pl.DataFrame(
        {"key": listing.keys, "size": listing.sizes, "stamp": listing.stamps},
        schema={k: v for k, v in HASH_SCHEMA.items() if k != "sha256"},
    ).sort("key")


def cached_hashes(lake: LakeResource, prefix: str = "") -> pl.DataFrame:
    """The cache's rows of the keys under `prefix`, probe columns included (null in a
    cache written before they existed).

    The 60 log files' three lookups a run would otherwise each read every photo's row
    too; a key range skips the row groups and files whose statistics lie outside it.
    """
    cached = lake.read_or_empty(HASH_CACHE_TABLE, CACHE_SCHEMA, filters=key_range(prefix))
    missing = [
        pl.lit(None, kind).alias(name)
        for name, kind in CACHE_SCHEMA.items()
        if name not in cached.columns
    ]
    return cached.with_columns(missing).select(list(CACHE_SCHEMA))


def key_range(prefix: str) -> list[tuple[str, str, object]] | None:
    """Delta filters selecting exactly the keys that start with `prefix` (None: all)."""
    if not prefix:
        return None
    after = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return [("key", ">=", prefix), ("key", "<", after)]


def facts_frame(keys: list[str], facts: list[Facts]) -> pl.DataFrame:
    """Read results as (key, sha256, probe columns), built column by column."""
    blank = (None, None, None, None)
    probes = [found or blank for _, found in facts]
    return pl.DataFrame(
        {
            "key": keys,
            "sha256": [sha for sha, _ in facts],
            "probed": [found is not None for _, found in facts],
            **{name: [p[i] for p in probes] for i, name in enumerate(list(PROBE_SCHEMA)[1:])},
        },
        schema={"key": pl.String, "sha256": pl.String, **PROBE_SCHEMA},
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
    cached = cached_hashes(lake, prefix)
    complete = pl.col("sha256").is_not_null()
    if probe:
        complete = complete & pl.col("probed").is_not_null()
    sink = log or (lambda line: None)
    if is_s3(store.uri):
        return listed_hashes(store, lake, prefix, cached, complete, commit_info, probe, sink)
    # a local store: listed by name only; each file's stat, compared with the cache's
    # stamp, and its read if that differs, happen together in `scan_objects`
    keys = pl.DataFrame({"key": store.listing(prefix, stat=False).keys}, schema={"key": pl.String})
    known = keys.sort("key").join(
        cached.filter(complete).drop("size"), on="key", how="left", maintain_order="left"
    )
    order = known.get_column("key").to_list()
    with Progress("hashing", len(order), sink, unit="objects") as progress:
        scanned = scan_objects(
            store, order, known.get_column("stamp").to_list(), probe, progress.advance
        )
    now = known.with_columns(scanned.get_column(name) for name in ("size", "stamp", "read"))
    fresh = scanned.filter("read").select(list(CACHE_SCHEMA))
    if not fresh.is_empty():
        lake.upsert(HASH_CACHE_TABLE, fresh, key=["key"], commit_info=commit_info)
    unchanged = now.filter(~pl.col("read"))
    hashed = pl.concat([unchanged.select(list(CACHE_SCHEMA)), fresh])
    return Hashed(hashed.sort("key"), fresh.height)


def listed_hashes(
    store: ObjectStoreResource,
    lake: LakeResource,
    prefix: str,
    cached: pl.DataFrame,
    complete: pl.Expr,
    commit_info: dict[str, str],
    probe: bool,
    sink: Sink,
) -> Hashed:
    """`object_hashes` of a remote store: listed with stamps (etags), then the objects
    whose stamp is not the cache's are read."""
    listing = listing_frame(store.listing(prefix))
    known = listing.join(cached.drop("size"), on=["key", "stamp"], how="left")
    stale = known.filter(~complete)
    if stale.is_empty():
        return Hashed(known.select(list(CACHE_SCHEMA)), 0)
    keys = stale.get_column("key").to_list()
    with Progress("hashing", len(keys), sink, unit="objects") as progress:
        facts = read_objects(store, keys, probe, progress.advance)
    fresh = stale.select("key", "size", "stamp").join(facts_frame(keys, facts), on="key")
    lake.upsert(
        HASH_CACHE_TABLE, fresh.select(list(CACHE_SCHEMA)), key=["key"], commit_info=commit_info
    )
    hashed = pl.concat(
        [known.filter(complete).select(list(CACHE_SCHEMA)), fresh.select(list(CACHE_SCHEMA))]
    )
    return Hashed(hashed.sort("key"), stale.height)

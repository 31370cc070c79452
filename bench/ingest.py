"""Ingest throughput: our photo ingest against `find | xargs -P2 -n 256 sha256sum`.

Target: ingest at least as fast as `xargs -P2 -n 256 sha256sum`, i.e. ratio ours/peer >= 1.0.
Without `-n`, xargs fills a 128 KiB command line before it starts a process, so on a
few thousand files only one `sha256sum` runs (see VERIFIED.md); `-n 256` makes both run.

    .venv/bin/python -m bench.ingest [--photos N | --sources DIR] [--keep DIR] [--repeats R]
        [--profile] [--stages]

Each measurement runs R times (on a fresh lake for ours) and the best time counts.
`--stages` times each stage of our ingest alone on the same files, back to back, in
microseconds per file (CPU time of this process and its workers, and wall time).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import math
import os
import pstats
import resource
import shlex
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from bench.common import Result, run_in_workdir
from lakehouse.demo.world import generate_world
from lakehouse.lake import LakeResource
from lakehouse.resources import ObjectStoreResource
from lakehouse.sources.hashing import (
    PROCESSES_FROM,
    hashing_processes,
    hashing_threads,
    listing_frame,
    object_hashes,
    scan_local_files,
    scanned_frame,
)
from lakehouse.sources.probe import (
    ScannedFiles,
    by_folder,
    header_facts,
    open_folder,
    read_listed,
)

PHOTO_PREFIX = "photos/"
PER_CALL = 256  # paths per sha256sum call: two processes really run at once
QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class Timing:
    """Best wall time of one measured command over its repeats."""

    name: str
    what: str
    seconds: float
    files: int

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2000, help="good photos to generate")
    parser.add_argument("--users", type=int, default=100, help="users in the synthetic world")
    parser.add_argument("--keep", type=Path, help="write sources and lakes here and keep them")
    parser.add_argument(
        "--sources",
        type=Path,
        help="measure this existing world (its photos/) instead of a new one",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (best wins)")
    parser.add_argument("--profile", action="store_true", help="cProfile one raw_objects run")
    parser.add_argument("--stages", action="store_true", help="time each stage alone")
    return parser.parse_args()


def load_raw_objects() -> dg.AssetsDefinition:
    """The real `raw_objects` asset (imported here so its beta warnings stay quiet)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lakehouse.raw.assets import raw_objects

    return raw_objects


def make_sources(work: Path, photos: int, users: int) -> Path:
    """Generate the synthetic world under `work/sources` and return that directory."""
    sources = work / "sources"
    sources.mkdir(parents=True, exist_ok=True)
    generate_world(sources, f"sqlite:///{sources}/metadata.db", photos=photos, users=users, days=3)
    return sources


def fresh_lake(work: Path) -> LakeResource:
    """A lake rooted in a new empty directory (nothing cached)."""
    lakes = work / "lakes"
    lakes.mkdir(parents=True, exist_ok=True)
    return LakeResource(root=tempfile.mkdtemp(dir=lakes))


def best_of(
    repeats: int, setup: Callable[[], object], run: Callable[[object], float | None]
) -> tuple[float, float]:
    """Best wall time of `run(setup())` over `repeats` runs (setup not timed), and the
    best of the inner times `run` returns (the wall time where it returns None)."""
    best, best_inner = math.inf, math.inf
    for _ in range(repeats):
        prepared = setup()
        start = time.perf_counter()
        inner = run(prepared)
        elapsed = time.perf_counter() - start
        best, best_inner = min(best, elapsed), min(best_inner, elapsed if inner is None else inner)
    return best, best_inner


def fresh_run(work: Path) -> tuple[LakeResource, dg.DagsterInstance]:
    """A fresh lake and the Dagster instance a run goes to, made before the timed run: a
    deployment's instance exists before its runs (making an in-memory one stamps its
    storage schemas, 0.2-0.4 s here, which `sha256sum` has no counterpart of)."""
    return fresh_lake(work), dg.DagsterInstance.ephemeral()


def materialize_raw_objects(
    asset: dg.AssetsDefinition,
    sources: Path,
    lake: LakeResource,
    instance: dg.DagsterInstance | None = None,
) -> float:
    """The full ingest (hash + cache write, probe, Delta writes) through Dagster, run
    setup and events included; returns the seconds the asset's step itself took."""
    result = dg.materialize(
        [asset],
        resources={"lake": lake, "sources": ObjectStoreResource(uri=str(sources))},
        instance=instance or dg.DagsterInstance.ephemeral(),
        run_config=QUIET_RUN,
    )
    if not result.success:
        raise RuntimeError("raw_objects materialization failed")
    (step,) = result.get_step_success_events()
    return step.event_specific_data.duration_ms / 1000  # type: ignore[union-attr]


def hash_phase(sources: Path, lake: LakeResource, files: int) -> None:
    """Only the observation's phase: list, hash and probe every object, write the cache."""
    store = ObjectStoreResource(uri=str(sources))
    result = object_hashes(store, lake, PHOTO_PREFIX, {}, probe=True)
    if result.hashed_now != files or result.objects.height != files:
        raise RuntimeError(
            f"hashed {result.hashed_now} of {result.objects.height} objects, expected {files}"
        )


def peer_command(photos_dir: Path, procs: int, per_call: int | None) -> str:
    """`find | xargs sha256sum`; `per_call` splits the paths so all `procs` really run."""
    split = f" -n {per_call}" if per_call else ""
    return (
        f"find {shlex.quote(str(photos_dir))} -type f -print0 "
        f"| xargs -0{split} -P{procs} sha256sum > /dev/null"
    )


def run_shell(command: str) -> None:
    subprocess.run(command, shell=True, check=True)


def time_materialize(work: Path, sources: Path, repeats: int) -> tuple[float, float]:
    """Best (whole materialize, asset step only) seconds, each run on a fresh lake (its
    instance made before the clock starts, see `fresh_run`)."""
    asset = load_raw_objects()
    return best_of(
        repeats,
        lambda: fresh_run(work),
        lambda run: materialize_raw_objects(asset, sources, *run),  # type: ignore[misc]
    )


def time_hash_phase(work: Path, sources: Path, files: int, repeats: int) -> float:
    """Best seconds of `object_hashes` alone, each run on a fresh lake."""
    return best_of(
        repeats,
        lambda: fresh_lake(work),
        lambda lake: hash_phase(sources, lake, files),  # type: ignore[arg-type]
    )[0]


def time_peer(photos_dir: Path, procs: int, per_call: int | None, repeats: int) -> float:
    command = peer_command(photos_dir, procs, per_call)
    return best_of(repeats, lambda: None, lambda _: run_shell(command))[0]


def measure_ours(work: Path, sources: Path, files: int, repeats: int) -> list[Timing]:
    full, step = time_materialize(work, sources, repeats)
    hashing = time_hash_phase(work, sources, files, repeats)
    cap = f"from {PROCESSES_FROM} files this process + {hashing_processes() - 1} worker(s)"
    return [
        Timing(
            "raw_objects",
            "dagster materialize: hash + probe + Delta writes (instance made before)",
            full,
            files,
        ),
        Timing("raw_objects step", "same runs, the asset's step only (no run setup)", step, files),
        Timing("object_hashes", f"list + hash + probe + cache write ({cap})", hashing, files),
    ]


def measure_peers(photos_dir: Path, files: int, repeats: int) -> list[Timing]:
    threads, half = hashing_threads(), math.ceil(files / 2)
    variants = [
        (f"xargs -P2 -n{PER_CALL}", "the target's command: two sha256sum at a time", 2, PER_CALL),
        (f"xargs -P{threads} -n{PER_CALL}", "our thread count", threads, PER_CALL),
        ("xargs -P2", "no -n: one sha256sum call for a few thousand paths", 2, None),
        (f"xargs -n{half} -P2", "two halves", 2, half),
    ]
    return [
        Timing(
            name,
            f"find | xargs -0 ... sha256sum: {what}",
            time_peer(photos_dir, p, n, repeats),
            files,
        )
        for name, what, p, n in variants
    ]


def ratio(ours: Timing, peer: Timing) -> float:
    """ours/peer in files/s: >= 1.0 means we are at least as fast."""
    return ours.files_per_s / peer.files_per_s


def timing_line(side: str, t: Timing, width: int) -> str:
    label = f"{side} {t.name}"
    return f"{label:<{width}} {t.seconds * 1000:8.1f} ms {t.files_per_s:9.0f} files/s  {t.what}"


def print_report(ours: list[Timing], peers: list[Timing]) -> None:
    """Timings, then every ours/peer ratio (>= 1.0: we are at least as fast)."""
    width = max(len(t.name) for t in ours + peers) + 5
    for side, timings in (("ours", ours), ("peer", peers)):
        print("\n".join(timing_line(side, t, width) for t in timings))
    print("\nratio ours/peer in files/s (>= 1.0 means at least as fast)")
    print(" " * width + "".join(f"{p.name:>20}" for p in peers))
    for t in ours:
        print(f"{t.name:<{width}}" + "".join(f"{ratio(t, p):>20.3f}" for p in peers))
    target = ratio(ours[0], peers[0])
    verdict = "MET" if target >= 1.0 else "NOT MET"
    print(f"\ntarget: ours raw_objects / peer {peers[0].name} = {target:.3f} -> {verdict}")


def profile_raw_objects(work: Path, sources: Path, top: int = 30) -> None:
    """cProfile one full raw_objects run on a fresh lake; print the top functions."""
    asset = load_raw_objects()
    profiler = cProfile.Profile()
    profiler.runcall(materialize_raw_objects, asset, sources, *fresh_run(work))
    for order in ("cumulative", "tottime"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(top)
        print(f"\n--- cProfile by {order} (main thread only; pool threads not seen) ---")
        print(text.getvalue())


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the worker processes), to
    the microsecond (`os.times` counts 10 ms ticks: 1 µs a file at 10k files)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def stage(name: str, files: int, work: Callable[[], object]) -> object:
    """Run `work` once; print its CPU and wall microseconds per file."""
    cpu, wall = cpu_seconds(), time.perf_counter()
    result = work()
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    print(f"{name:<60} {cpu / files * 1e6:7.2f} {wall / files * 1e6:7.2f}")
    return result


def read_all(root: str, keys: list[str]) -> list[bytes]:
    """Every listed file's bytes, as the workers read them (folder by folder, by name)."""
    found = []
    for folder, positions in by_folder(keys):
        descriptor = open_folder(root, folder)
        try:
            for i in positions:
                found.append(read_listed(root, descriptor, keys[i], keys[i].rpartition("/")[2])[0])
        finally:
            os.close(descriptor)
    return found


def time_stages(work: Path, sources: Path) -> None:
    """Each stage of the ingest alone, on the same files, back to back (µs per file)."""
    store = ObjectStoreResource(uri=str(sources))
    files = photo_files(sources)
    load = os.getloadavg()[0]
    print(f"\n{f'stage ({files} files, load {load:.1f})':<60} {'cpu µs':>7} {'wall µs':>7}")
    stage(
        "list with stat (scandir by folder, stat by name), frame",
        files,
        lambda: listing_frame(store.listing(PHOTO_PREFIX)),
    )
    keys = stage(
        "list names only (what a local ingest lists), sorted",
        files,
        lambda: sorted(store.listing(PHOTO_PREFIX, stat=False).keys),
    )
    assert isinstance(keys, list)
    unknown: list[str | None] = [None] * len(keys)
    datas = stage(
        "open by name in its folder + fstat + read (one process)",
        files,
        lambda: read_all(str(sources), keys),
    )
    assert isinstance(datas, list)
    stage("sha256 digest", files, lambda: [hashlib.sha256(d).digest() for d in datas])
    stage(
        "header probe (header_facts; PIL only where it must judge)",
        files,
        lambda: [header_facts(d) for d in datas],
    )
    stage(
        "scan: stat + read + hash + probe, this process (one worker's work)",
        files,
        lambda: scan_local_files(store.uri, keys, unknown, True, 0, lambda n: None),
    )
    workers = hashing_processes()
    scanned = stage(
        f"scan: the same in {workers} worker processes (starts and pickles included)",
        files,
        lambda: scan_local_files(store.uri, keys, unknown, True, workers, lambda n: None),
    )
    assert isinstance(scanned, ScannedFiles)
    stage(
        f"scan: this process + {workers - 1} worker process(es) sharing parts (from 20k files)",
        files,
        lambda: scan_local_files(store.uri, keys, unknown, True, workers - 1, lambda n: None, True),
    )
    stage("frame of the scan (from its columns)", files, lambda: scanned_frame(keys, scanned, True))
    stage(
        "object_hashes on a fresh lake (list + scan + frames + cache Delta write)",
        files,
        lambda: hash_phase(sources, fresh_lake(work), files),
    )
    asset, run = load_raw_objects(), fresh_run(work)
    stage(
        "raw_objects: dagster materialize (+ registry, quarantine writes, run setup)",
        files,
        lambda: materialize_raw_objects(asset, sources, *run),
    )
    stage(
        f"peer: find | xargs -P2 -n {PER_CALL} sha256sum",
        files,
        lambda: run_shell(peer_command(sources / "photos", 2, PER_CALL)),
    )


def photo_files(sources: Path) -> int:
    return sum(1 for p in (sources / "photos").rglob("*") if p.is_file())


def compare(work: Path, sources: Path, repeats: int) -> Result:
    """The ingest comparison on an existing world: raw_objects vs `xargs -P2 -n 256 sha256sum`."""
    files = photo_files(sources)
    full, _ = time_materialize(work, sources, repeats)
    ours = Timing("raw_objects", "dagster materialize", full, files)
    seconds = time_peer(sources / "photos", 2, PER_CALL, repeats)
    peer = Timing(f"xargs -P2 -n{PER_CALL}", "sha256sum", seconds, files)
    return Result.of(
        f"ingest {files} photos (hash + probe + Delta writes, one read each): raw_objects vs "
        f"xargs -P2 -n {PER_CALL} sha256sum",
        ours.files_per_s,
        peer.files_per_s,
        "files/s",
        ratio(ours, peer),
        ">= 1.0",
    )


def run(work: Path, args: argparse.Namespace) -> None:
    start = time.perf_counter()
    sources = args.sources or make_sources(work, args.photos, args.users)
    photos_dir = sources / "photos"
    files = photo_files(sources)
    size = sum(p.stat().st_size for p in photos_dir.rglob("*") if p.is_file())
    elapsed = time.perf_counter() - start
    print(f"{files} files, {size / 2**20:.1f} MiB in {photos_dir} (generated in {elapsed:.1f} s)")
    print(f"hashing_threads()={hashing_threads()}; best of {args.repeats} runs each\n")
    ours = measure_ours(work, sources, files, args.repeats)
    peers = measure_peers(photos_dir, files, args.repeats)
    print_report(ours, peers)
    if args.stages:
        time_stages(work, sources)
    if args.profile:
        profile_raw_objects(work, sources)


def main() -> int:
    return run_in_workdir(run, parse_args(), "ingest")


if __name__ == "__main__":
    raise SystemExit(main())

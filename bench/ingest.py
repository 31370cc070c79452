"""Ingest throughput: our photo ingest against `find | xargs -P2 sha256sum` on the same files.

Target (issue): ingest at least as fast as `xargs -P2 sha256sum`, i.e. ratio ours/peer >= 1.0.

    .venv/bin/python bench/ingest.py [--photos N] [--keep DIR] [--repeats R] [--profile]

Each measurement runs R times (on a fresh lake for ours) and the best time counts.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import pstats
import shlex
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from lakehouse.resources import LakeResource, ObjectStoreResource
from lakehouse.sources.hashing import hashing_threads, object_hashes
from lakehouse.synthetic import generate_world

PHOTO_PREFIX = "photos/"
QUIET_RUN = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class Timing:
    """Best wall time of one measured command over its repeats."""

    label: str
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
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (best wins)")
    parser.add_argument("--profile", action="store_true", help="cProfile one raw_objects run")
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


def best_of(repeats: int, setup: Callable[[], object], run: Callable[[object], None]) -> float:
    """Best wall time of `run(setup())` over `repeats` runs; setup is not timed."""
    best = math.inf
    for _ in range(repeats):
        prepared = setup()
        start = time.perf_counter()
        run(prepared)
        best = min(best, time.perf_counter() - start)
    return best


def materialize_raw_objects(asset: dg.AssetsDefinition, sources: Path, lake: LakeResource) -> None:
    """The full ingest: hash + cache write, probe, Delta writes, through Dagster."""
    result = dg.materialize(
        [asset],
        resources={"lake": lake, "sources": ObjectStoreResource(uri=str(sources))},
        instance=dg.DagsterInstance.ephemeral(),
        run_config=QUIET_RUN,
    )
    if not result.success:
        raise RuntimeError("raw_objects materialization failed")


def hash_phase(sources: Path, lake: LakeResource, files: int) -> None:
    """Only the hash phase: list, hash every object, write the hash cache."""
    hashes, hashed = object_hashes(ObjectStoreResource(uri=str(sources)), lake, PHOTO_PREFIX, {})
    if hashed != files or hashes.height != files:
        raise RuntimeError(f"hashed {hashed} of {hashes.height} objects, expected {files}")


def peer_command(photos_dir: Path, procs: int, per_call: int | None) -> str:
    """`find | xargs sha256sum`; `per_call` splits the paths so all `procs` really run."""
    split = f" -n {per_call}" if per_call else ""
    return (
        f"find {shlex.quote(str(photos_dir))} -type f -print0 "
        f"| xargs -0{split} -P{procs} sha256sum > /dev/null"
    )


def run_shell(command: str) -> None:
    subprocess.run(command, shell=True, check=True)


def measure_ours(work: Path, sources: Path, files: int, repeats: int) -> list[Timing]:
    asset = load_raw_objects()
    full = best_of(
        repeats,
        lambda: fresh_lake(work),
        lambda lake: materialize_raw_objects(asset, sources, lake),  # type: ignore[arg-type]
    )
    hashing = best_of(
        repeats,
        lambda: fresh_lake(work),
        lambda lake: hash_phase(sources, lake, files),  # type: ignore[arg-type]
    )
    return [
        Timing("ours raw_objects (dagster materialize: hash+probe+delta)", full, files),
        Timing(
            f"ours object_hashes only ({hashing_threads()} threads, + cache write)", hashing, files
        ),
    ]


def measure_peers(photos_dir: Path, files: int, repeats: int) -> list[Timing]:
    threads = hashing_threads()
    variants = [
        ("-P2", 2, None),
        (f"-P{threads} (our thread count)", threads, None),
        (f"-n{math.ceil(files / 2)} -P2 (2 real processes)", 2, math.ceil(files / 2)),
    ]
    return [
        Timing(
            f"peer find | xargs -0 {name} sha256sum",
            best_of(
                repeats, lambda: None, lambda _, c=peer_command(photos_dir, p, n): run_shell(c)
            ),
            files,
        )
        for name, p, n in variants
    ]


def print_report(ours: list[Timing], peers: list[Timing]) -> None:
    width = max(len(t.label) for t in ours + peers)
    for t in ours + peers:
        print(f"{t.label:<{width}}  {t.seconds * 1000:9.1f} ms  {t.files_per_s:10.0f} files/s")
    print()
    reference = peers[0]
    for t in ours:
        for peer in peers:
            ratio = t.files_per_s / peer.files_per_s
            verdict = "OK" if ratio >= 1.0 else "SLOWER"
            tag = "  <- issue target" if t is ours[0] and peer is reference else ""
            print(f"ratio ours/peer  {t.label} / {peer.label}: {ratio:.3f} {verdict}{tag}")


def profile_raw_objects(work: Path, sources: Path, top: int = 30) -> None:
    """cProfile one full raw_objects run on a fresh lake; print the top functions."""
    asset = load_raw_objects()
    lake = fresh_lake(work)
    profiler = cProfile.Profile()
    profiler.runcall(materialize_raw_objects, asset, sources, lake)
    for order in ("cumulative", "tottime"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(top)
        print(f"\n--- cProfile by {order} (main thread only; pool threads not seen) ---")
        print(text.getvalue())


def run(work: Path, args: argparse.Namespace) -> None:
    start = time.perf_counter()
    sources = make_sources(work, args.photos, args.users)
    photos_dir = sources / "photos"
    files = sum(1 for p in photos_dir.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in photos_dir.rglob("*") if p.is_file())
    elapsed = time.perf_counter() - start
    print(f"{files} files, {size / 2**20:.1f} MiB in {photos_dir} (generated in {elapsed:.1f} s)")
    print(f"hashing_threads()={hashing_threads()}; best of {args.repeats} runs each\n")
    ours = measure_ours(work, sources, files, args.repeats)
    peers = measure_peers(photos_dir, files, args.repeats)
    print_report(ours, peers)
    if args.profile:
        profile_raw_objects(work, sources)


def main() -> int:
    args = parse_args()
    if args.keep:
        run(args.keep, args)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as work:
            run(Path(work), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

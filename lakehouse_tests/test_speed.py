"""Speed work that must not change results: one read per object, fast views equal to Delta's.

Timings live in bench/; these tests check what the faster paths promise, from the
lake's own records (Delta commit metrics and table versions).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import astuple
from pathlib import Path

import polars as pl
import psutil
import pytest

from lakehouse.failpoints import CRASH_VAR
from lakehouse.lake import LakeResource
from lakehouse.lake.tables import OBJECT_HASHES, RAW_OBJECTS
from lakehouse.resources import ObjectStoreResource
from lakehouse.resources.keys import UnsafeKeyError
from lakehouse.sources import hashing
from lakehouse.sources.contract import PHOTO_PREFIX
from lakehouse.sources.hashing import cached_hashes, listing_frame, object_hashes, scan_objects
from lakehouse.sources.probe import probe_object, read_hash_probe
from lakehouse_tests.conftest import DEMO_FIRST, DEMO_LAST, DemoLake, Lakehouse
from lakehouse_tests.servers.s3 import aws_settings, s3_server
from lakehouse_tests.test_hostile_input import HOSTILE_OBJECTS
from lakehouse_tests.test_images_decode import encoded, noisy_photo

pytestmark = pytest.mark.speed


def inserted_rows(lakehouse: Lakehouse, table: str) -> list[int]:
    """Rows each commit of `table` inserted, oldest first (Delta's operationMetrics)."""
    history = lakehouse.lake_resource.open(table).history()  # type: ignore[union-attr]
    return [
        int(commit.get("operationMetrics", {}).get("num_target_rows_inserted", 0))
        or int(commit.get("operationMetrics", {}).get("num_added_rows", 0))
        for commit in reversed(history)
    ]


def test_the_observation_reads_each_photo_once_and_raw_objects_reads_none(
    lakehouse: Lakehouse,
) -> None:
    lakehouse.observe()
    cache_version = lakehouse.lake_resource.version(OBJECT_HASHES)
    everything = cached_hashes(lakehouse.lake_resource)
    photos = everything.filter(pl.col("key").str.starts_with("photos/"))
    assert photos["probed"].all(), "the observation probed every photo it hashed"
    # a prefix's lookup holds exactly that prefix's rows (logs/ sorts before photos/)
    for prefix in ("photos/", "logs/", "photos"):
        expected = everything.filter(pl.col("key").str.starts_with(prefix))
        assert expected.height > 0
        got = cached_hashes(lakehouse.lake_resource, prefix)
        assert got.sort("key").equals(expected.sort("key")), prefix
    # zero one good photo's bytes behind the cache's back (same size, same mtime): a step
    # that read it again would quarantine it as "not an image"
    spoiled_key = photos.filter(pl.col("reason").is_null())["key"][0]
    spoiled = lakehouse.sources / spoiled_key
    stat = spoiled.stat()
    spoiled.write_bytes(bytes(stat.st_size))
    os.utime(spoiled, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    lakehouse.materialize(select={"raw_objects"})
    # raw_objects found every hash and probe in the cache: no object read, no cache commit
    assert lakehouse.lake_resource.version(OBJECT_HASHES) == cache_version
    kept = lakehouse.lake_resource.read(RAW_OBJECTS).filter(pl.col("key") == spoiled_key)
    assert kept["status"].to_list() == ["current"] and kept["media_type"][0] is not None
    spoiled.unlink()  # the rest compares cached facts with the bytes
    assert sum(inserted_rows(lakehouse, OBJECT_HASHES)) == lakehouse.lake_resource.row_count(
        OBJECT_HASHES
    )
    # and the cached facts are what a fresh probe of the bytes says
    registry = lakehouse.lake_resource.read(RAW_OBJECTS).filter(pl.col("status") == "current")
    registry = registry.filter(pl.col("key") != spoiled_key)
    for key, media_type, width, height in registry.select(
        "key", "media_type", "width", "height"
    ).iter_rows():
        probe = probe_object((lakehouse.sources / key).read_bytes())
        assert (probe.media_type, probe.width, probe.height) == (media_type, width, height)
    bad = photos.filter(pl.col("reason").is_not_null())
    assert not bad.is_empty(), "the world holds refused objects"
    quarantine = lakehouse.lake_resource.read("quarantine")
    for key, reason in bad.select("key", "reason").iter_rows():
        assert reason == probe_object((lakehouse.sources / key).read_bytes()).reason
        assert quarantine.filter((pl.col("key") == key) & (pl.col("reason") == reason)).height == 1


def header_cases() -> dict[str, bytes]:
    """Plain and unusual JPEGs and PNGs, as PIL writes them."""
    import io

    from PIL import Image, PngImagePlugin

    def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    rgb = Image.radial_gradient("L").resize((37, 23)).convert("RGB")
    text = PngImagePlugin.PngInfo()
    text.add_text("note", "x" * 50)
    exif = Image.Exif()
    exif[0x0112] = 6
    return {
        "jpeg rgb": encoded(rgb, "JPEG"),
        "jpeg grey": encoded(rgb.convert("L"), "JPEG"),
        "jpeg cmyk": encoded(rgb.convert("CMYK"), "JPEG"),
        "jpeg progressive": encoded(rgb, "JPEG", progressive=True, optimize=True),
        "jpeg restart": encoded(rgb, "JPEG", restart_marker_blocks=1, comment=b"hello"),
        "jpeg exif": encoded(rgb, "JPEG", exif=exif.tobytes()),
        "jpeg icc": encoded(rgb, "JPEG", icc_profile=b"\0" * 200),
        "png rgb": encoded(rgb, "PNG"),
        "png bilevel": encoded(rgb.convert("1"), "PNG"),
        "png palette": encoded(rgb.convert("P"), "PNG"),
        "png rgba": encoded(rgb.convert("RGBA"), "PNG"),
        "png 16 bit": encoded(rgb.convert("I;16"), "PNG"),
        "png text": encoded(rgb, "PNG", pnginfo=text),
        "apng": encoded(rgb, "PNG", save_all=True, append_images=[rgb.convert("L").convert("RGB")]),
    }


def test_the_header_probe_says_what_pil_says() -> None:
    """The header fast path (no PIL) answers exactly as PIL for whole images, every cut of
    their headers and seeded byte flips; what it cannot judge goes to PIL."""
    import random

    from lakehouse.sources.probe import header_probe, pil_probe

    cases = header_cases()
    plain = [name for name in cases if name.startswith(("jpeg", "png")) and "exif" not in name]
    for name in plain:
        if name not in {"jpeg icc", "png text", "png palette"}:
            assert header_probe(cases[name]) is not None, f"{name}: the fast path judged it"
    flips = random.Random(18)
    checked = 0
    for name, data in cases.items():
        variants = [data[:cut] for cut in range(min(len(data), 900))]
        for _ in range(300):
            spoiled = bytearray(data)
            spoiled[flips.randrange(min(len(data), 700))] = flips.randrange(256)
            variants.append(bytes(spoiled))
        for variant in variants:
            assert probe_object(variant) == pil_probe(variant), (name, len(variant))
            checked += 1
    assert checked > 10_000


def test_photo_features_are_not_recomputed_from_unchanged_inputs(
    demo_lake: DemoLake, tmp_path: Path
) -> None:
    """A no-change run does not read the events again for photo_features: with the
    events' data files gone (their log, so their version, intact) the step still succeeds
    and commits nothing; a recomputation would have had to read them."""
    copy = Lakehouse(sources=demo_lake.lakehouse.sources, lake=tmp_path / "lake")
    shutil.copytree(demo_lake.lakehouse.lake, copy.lake)
    lake = copy.lake_resource
    before = lake.version("photo_features")
    events = lake.open("raw_events").file_uris()  # type: ignore[union-attr]
    assert events
    for uri in events:
        os.remove(uri.removeprefix("file://"))
    result = copy.materialize(
        DEMO_FIRST, DEMO_LAST, select={"photo_features"}, raise_on_error=False
    )
    succeeded = {event.step_key for event in result.get_step_success_events()}
    assert "photo_features" in succeeded
    assert lake.version("photo_features") == before
    # the events cannot be read: a step that read them would have failed
    with pytest.raises(FileNotFoundError):
        lake.read("raw_events")
    # the check that recounts from the events passed on these very versions before: it
    # says so instead of reading them (graph.reuse)
    (leakage,) = [
        evaluation
        for evaluation in result.get_asset_check_evaluations()
        if evaluation.check_name == "photo_features_no_leakage"
    ]
    assert leakage.passed and leakage.metadata["reused"].value is True


def test_augmented_tensors_are_written_in_bounded_row_groups(demo_lake: DemoLake) -> None:
    """Readers decode whole row groups: the tensor table's stay at the registry's bound
    (merged and compacted files alike), so reading a few views never decodes 18k."""
    import pyarrow.parquet as pq

    from lakehouse.lake.tables import AUGMENTED_TENSORS, rows_per_group

    bound = rows_per_group(AUGMENTED_TENSORS)
    assert bound is not None
    table = demo_lake.lakehouse.lake_resource.open(AUGMENTED_TENSORS)
    groups = [
        metadata.row_group(index).num_rows
        for uri in table.file_uris()  # type: ignore[union-attr]
        for metadata in [pq.ParquetFile(uri.removeprefix("file://")).metadata]
        for index in range(metadata.num_row_groups)
    ]
    assert sum(groups) == table.count()  # type: ignore[union-attr]
    assert max(groups) <= bound < sum(groups)


def test_compaction_keeps_tensor_files_at_the_registry_size(tmp_path: Path) -> None:
    """Deleting a changed photo's views rewrites the file that holds them: compaction of
    the tensor table aims at the registry's file size, not the writer's 100 MiB."""
    import numpy as np

    from lakehouse.lake.tables import AUGMENTED_TENSORS, file_bytes

    target = file_bytes(AUGMENTED_TENSORS)
    assert target is not None and target < 100 * 2**20
    lake, info = LakeResource(root=str(tmp_path)), {"dagster_run_id": "test"}
    noise = np.random.default_rng(0)
    view = 3 * 96 * 96  # incompressible pixels: file sizes are the data's
    per_commit, commits = 300, 10
    for commit in range(commits):
        rows = pl.DataFrame(
            {
                "sha256": [f"{commit:02d}{n:062x}" for n in range(per_commit)],
                "aug_index": pl.Series([0] * per_commit, dtype=pl.Int32),
                "recipe_version": ["v"] * per_commit,
                "tensor": [noise.bytes(view) for _ in range(per_commit)],
            }
        )
        lake.upsert(AUGMENTED_TENSORS, rows, commit_info=info)
    before = lake.open(AUGMENTED_TENSORS).count()  # type: ignore[union-attr]
    done = lake.compact(AUGMENTED_TENSORS, commit_info=info)
    table = lake.open(AUGMENTED_TENSORS)
    sizes = [Path(uri.removeprefix("file://")).stat().st_size for uri in table.file_uris()]  # type: ignore[union-attr]
    assert done["files_added"] >= 2 and table.count() == before == per_commit * commits  # type: ignore[union-attr]
    # all of it (about 83 MB) would fit in one file of the writer's default size
    assert sum(sizes) > 2 * target and max(sizes) <= target * 1.1


def test_the_blob_store_answers_whether_it_holds_a_key_locally_and_on_s3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a reused check's claim asks: held or not, never an error for a missing key
    (on S3 a HEAD request)."""
    with s3_server(("lake-bucket",)) as endpoint:
        for name, value in aws_settings(endpoint).items():
            monkeypatch.setenv(name, value)
        for root in (str(tmp_path / "lake"), "s3://lake-bucket/lake"):
            lake = LakeResource(root=root)
            key = lake.put_object(b"a passed check")
            absent = key[:-1] + ("0" if key[-1] != "0" else "1")
            assert (lake.has_object(key), lake.has_object(absent)) == (True, False), root


def hostile_store(root: Path) -> ObjectStoreResource:
    """A store of good photos in several folders and every hostile object of the
    hostile-input test (empty, truncated, GIF, HTML, bomb, odd keys)."""
    for _, key, data, _ in HOSTILE_OBJECTS:
        target = root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data())
    for n in range(24):
        target = root / f"photos/2026/{n % 3:02d}/{n:04d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encoded(noisy_photo(n, (20 + n, 10 + n)), "PNG" if n % 2 else "JPEG"))
    return ObjectStoreResource(uri=str(root))


def test_worker_processes_read_what_one_process_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parallel read path (worker processes, each folder opened once, files by name)
    gives the same sizes, stamps, hashes, probe facts and refusal reasons as one process
    and as the per-key reader; a file whose stamp is the known one is not read; a file
    swapped for a link after the listing is refused."""
    store = hostile_store(tmp_path / "store")
    listing = listing_frame(store.listing(PHOTO_PREFIX))
    keys, stamps = listing["key"].to_list(), listing["stamp"].to_list()
    unknown: list[str | None] = [None] * len(keys)
    one = scan_objects(store, keys, unknown, probe=True, workers=0)
    many = scan_objects(store, keys, unknown, probe=True, workers=3)
    assert many.equals(one) and one["key"].to_list() == keys and one["read"].all()
    # this process and a worker process sharing parts of 2 keys, as from PROCESSES_FROM
    monkeypatch.setattr(hashing, "KEYS_PER_TASK", 2)
    monkeypatch.setattr(hashing, "PROCESSES_FROM", 1)
    assert scan_objects(store, keys, unknown, probe=True).equals(one)
    assert one["stamp"].to_list() == stamps, "the stamps the listing gives"
    facts = one.select("sha256", "media_type", "width", "height", "reason").rows()
    assert [(sha, rest) for sha, *rest in facts] == [
        (sha, list(found)) for sha, found in read_hash_probe(store.uri, keys, probe=True)
    ]
    probed = ("media_type", "width", "height", "reason")
    for key, size, sha, *found in one.select("key", "size", "sha256", *probed).rows():
        data = (tmp_path / "store" / key).read_bytes()
        assert (size, sha) == (len(data), hashlib.sha256(data).hexdigest())
        assert tuple(found) == astuple(probe_object(data))
    reasons = dict(one.filter(pl.col("reason").is_not_null()).select("key", "reason").rows())
    for case, key, _, reason in HOSTILE_OBJECTS:
        if reason is None or reason == "truncated":  # a cut JPEG is refused when decoded
            assert key not in reasons, case
        else:
            assert reason in reasons[key], (case, reasons.get(key))
    # known stamps: nothing read but the one file whose stamp is not its known one
    known: list[str | None] = [*stamps[:-1], "0:0"]
    for workers in (0, 3):
        scanned = scan_objects(store, keys, known, probe=True, workers=workers)
        assert scanned["read"].to_list() == [False] * (len(keys) - 1) + [True]
        assert scanned.select("key", "size", "stamp").equals(one.select("key", "size", "stamp"))
        assert scanned.row(-1) == one.row(-1)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"not yours")
    swapped = tmp_path / "store" / keys[-1]
    swapped.unlink()
    swapped.symlink_to(outside)
    for workers in (0, 3):
        with pytest.raises(UnsafeKeyError, match="symbolic link"):
            scan_objects(store, keys, unknown, probe=True, workers=workers)


def test_a_worker_killed_mid_read_fails_the_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process that dies (here SIGKILLed at its 3rd object by the failpoint the
    crash tests use) fails the whole read with one line naming its exit status: no
    partial answer, and no worker left behind."""
    store = hostile_store(tmp_path / "store")
    keys = sorted(store.listing(PHOTO_PREFIX).keys)
    monkeypatch.setenv(CRASH_VAR, "hash/object:3")
    with pytest.raises(RuntimeError, match=r"hashing worker exited with status -9"):
        scan_objects(store, keys, [None] * len(keys), probe=True, workers=2)
    left = [p.cmdline() for p in psutil.Process().children(recursive=True)]
    assert not [line for line in left if "lakehouse.sources.read_worker" in line], left


def test_local_and_remote_stores_give_the_same_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`object_hashes` of the hostile store read locally (names, then stat and read in
    one pass, in two worker processes here) and of the same objects in S3 (listing with
    etags, threads): the same keys, sizes, hashes and probe facts; a second look at
    either reads nothing and commits nothing."""
    store = hostile_store(tmp_path / "store")
    (tmp_path / "store" / "photos/new\nline.png").unlink()  # moto answers 404 to such a key
    facts = ["key", "size", "sha256", "probed", "media_type", "width", "height", "reason"]
    with s3_server(("sources-bucket",)) as endpoint:
        for name, value in aws_settings(endpoint).items():
            monkeypatch.setenv(name, value)
        remote = ObjectStoreResource(uri="s3://sources-bucket/world")
        remote.mirror(tmp_path / "store", (PHOTO_PREFIX,))
        monkeypatch.setattr(hashing, "PROCESSES_FROM", 1)  # the worker path, on a few files
        results = {}
        for side, source in (("local", store), ("remote", remote)):
            lake = LakeResource(root=str(tmp_path / f"lake-{side}"))
            first = object_hashes(source, lake, PHOTO_PREFIX, {}, probe=True)
            version = lake.version(OBJECT_HASHES)
            again = object_hashes(source, lake, PHOTO_PREFIX, {}, probe=True)
            assert first.hashed_now == first.objects.height and again.hashed_now == 0, side
            assert lake.version(OBJECT_HASHES) == version, f"{side}: no commit when nothing read"
            assert again.objects.equals(first.objects), side
            results[side] = first.objects.select(facts)
    assert results["local"].equals(results["remote"])


def test_digests_hashed_in_chunks_are_each_rows_own() -> None:
    """SHA-256s computed by DuckDB over many chunks at once (above one chunk of rows) come
    back in the rows' order: each the digest of its own text, a null staying null."""
    from lakehouse.lake.digests import HASH_CHUNK_ROWS, hash_bucket, row_digests, sha256_hex

    n = 3 * HASH_CHUNK_ROWS + 17
    texts = pl.Series("t", [None if i % 1000 == 7 else f"ü{i}\x1f{i * i}" for i in range(n)])
    found = sha256_hex(texts).to_list()

    expected = [None if t is None else hashlib.sha256(t.encode()).hexdigest() for t in texts]
    assert found == expected
    ids = pl.Series("photo_id", range(n))
    assert hash_bucket(ids, 97).to_list() == [
        int(hashlib.sha256(str(i).encode()).hexdigest(), 16) % 97 for i in range(n)
    ]
    rows = pl.DataFrame({"b": [f"x{i}" for i in range(n)], "a": range(n)})
    assert row_digests(rows).to_list() == [
        hashlib.sha256(f"{i}\x1fx{i}".encode()).hexdigest() for i in range(n)
    ]


def test_the_floor_bench_runs_a_no_op_twin_of_the_whole_graph(tmp_path: Path) -> None:
    """bench/floor.py measures Dagster alone under a rerun of our graph: its twin has the
    real keys, dependencies, partitions, backfill policies, checks and observable
    sources, and its runs execute every step of them (the range's every partition)."""
    import dagster as dg

    from bench.floor import run_twin, twin
    from lakehouse.definitions import build_definitions

    real = build_definitions(
        lake=str(tmp_path / "lake"),
        sources=str(tmp_path / "sources"),
        metadata_db=f"sqlite:///{tmp_path / 'metadata.db'}",
    )
    defs = twin(real)
    ours, its = real.resolve_asset_graph(), defs.resolve_asset_graph()

    def shape(graph: dg.AssetGraph) -> dict[dg.AssetKey, tuple]:
        return {
            key: (
                graph.get(key).is_materializable,
                graph.get(key).is_observable,
                sorted(graph.get(key).parent_keys),
                graph.get(key).partitions_def,
                graph.get(key).backfill_policy,
            )
            for key in graph.get_all_asset_keys()
        }

    assert shape(its) == shape(ours)
    assert its.asset_check_keys == ours.asset_check_keys and len(ours.asset_check_keys) >= 5
    partitioned = [key for key in ours.materializable_asset_keys if ours.get(key).partitions_def]
    assert partitioned  # the daily assets are in the twin, partitions and all

    instance = dg.DagsterInstance.ephemeral()
    assert run_twin(defs, DEMO_FIRST, DEMO_LAST, instance) > 0
    days = len(
        ours.get(partitioned[0]).partitions_def.get_partition_keys_in_range(  # type: ignore[union-attr]
            dg.PartitionKeyRange(DEMO_FIRST, DEMO_LAST)
        )
    )
    materialized = instance.get_event_records(
        dg.EventRecordsFilter(dg.DagsterEventType.ASSET_MATERIALIZATION), limit=10_000
    )
    expected = len(ours.materializable_asset_keys) + len(partitioned) * (days - 1)
    assert days > 1 and len(materialized) == expected
    checked = instance.get_event_records(
        dg.EventRecordsFilter(dg.DagsterEventType.ASSET_CHECK_EVALUATION), limit=100
    )
    assert len(checked) == len(ours.asset_check_keys)

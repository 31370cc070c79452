"""Pixels are read in bounded batches: photo_classes commits one batch of images at a time,
and the classifier holds at most max_steps x batch_size training views, compressed, and
lets go of them when its step ends.

Bounds are shown by counts of work (commits, rows per commit, views chosen), never by time.
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch
from deltalake import write_deltalake
from polars.testing import assert_frame_equal

from lakehouse.lake import LakeResource
from lakehouse.models.assets import capped_views
from lakehouse.models.classifier import PackedPixels, TrainConfig, predict, train_classifier
from lakehouse_tests.conftest import DemoLake, Lakehouse, materializations
from lakehouse_tests.delta_counts import commits_since, counted

pytestmark = pytest.mark.scale


def upstream_copy(demo_lake: DemoLake, tmp_path: Path, without: str) -> Lakehouse:
    """A private copy of the demo lake as of its classifier, with table `without` removed."""
    copy = Lakehouse(sources=demo_lake.lakehouse.sources, lake=tmp_path / "lake")
    shutil.copytree(demo_lake.upstream, copy.lake)
    shutil.rmtree(copy.lake_resource.table_uri(without))
    return copy


def run_asset(lakehouse: Lakehouse, name: str, config: dict[str, object]) -> dict[str, object]:
    """Materialize one unpartitioned asset with its config; its reported metadata."""
    job = (
        lakehouse.definitions()
        .resolve_implicit_global_asset_job_def()
        .get_subset(asset_selection={dg.AssetKey(name)})
    )
    result = job.execute_in_process(
        instance=lakehouse.instance, run_config={"ops": {name: {"config": config}}}
    )
    assert result.success
    return materializations(result)[name]


def classes(lakehouse: Lakehouse) -> pl.DataFrame:
    return lakehouse.lake_resource.read("photo_classes").sort("sha256")


def test_photo_classes_commits_one_bounded_batch_at_a_time(
    demo_lake: DemoLake, tmp_path: Path
) -> None:
    one_batch = Lakehouse(sources=demo_lake.lakehouse.sources, lake=demo_lake.upstream)
    assert one_batch.lake_resource.version("photo_classes") == 0  # 400 images, one batch
    batched = upstream_copy(demo_lake, tmp_path, without="photo_classes")

    found = run_asset(batched, "photo_classes", {"images_per_batch": 16})

    images = classes(one_batch).height
    assert images > 16
    lake = batched.lake_resource
    # Delta's commit metrics: one commit per batch, each adding at most 16 rows, none
    # rewritten, and together every image once; then, after that many commits, one
    # compaction of their files into one
    history = commits_since(lake, "photo_classes", None)
    *batches, compaction = history
    commits = [counted(c) for c in batches]
    assert len(commits) == found["batches"] == math.ceil(images / 16)
    added = [commit.inserted for commit in commits]
    assert max(added) == 16 and sum(added) == images
    assert sum(commit.updated + commit.deleted + commit.files_removed for commit in commits) == 0
    assert compaction["operation"] == "OPTIMIZE"
    assert counted(compaction).files_removed == len(commits) > counted(compaction).files_added
    assert len(lake.open("photo_classes").file_uris()) == counted(compaction).files_added  # type: ignore[union-attr]
    exact = ["sha256", "model_version", "content_label", "style_label"]
    assert_frame_equal(classes(batched).select(exact), classes(one_batch).select(exact))
    assert_frame_equal(classes(batched), classes(one_batch), abs_tol=1e-5)


def test_training_views_are_capped_by_content_not_by_order() -> None:
    views = pl.DataFrame(
        {
            "photo_id": [p for p in range(50) for _ in range(4)],
            "sha256": [f"{p:064x}" for p in range(50) for _ in range(4)],
            "aug_index": [i for _ in range(50) for i in range(4)],
        },
        schema_overrides={"aug_index": pl.Int32},
    )
    assert_frame_equal(capped_views(views, 200), views)
    chosen = capped_views(views, 60)
    assert chosen.height == 60
    assert_frame_equal(chosen, chosen.sort("photo_id", "aug_index"))
    assert_frame_equal(capped_views(views.sample(fraction=1, shuffle=True, seed=1), 60), chosen)
    assert chosen["photo_id"].n_unique() > 15  # views, not whole photos, are sampled


def held_pixels() -> set[int]:
    """Ids of the packed views and view-sized pixel tensors (N×3×96×96 uint8) alive in
    this process: what a finished step must not add to."""
    gc.collect()
    return {
        id(held)
        for held in gc.get_objects()
        if isinstance(held, PackedPixels)
        or (
            isinstance(held, torch.Tensor)
            and held.dtype == torch.uint8
            and tuple(held.shape[-3:]) == (3, 96, 96)
        )
    }


@pytest.mark.speed
def test_packed_pixels_are_the_same_pixels_and_train_the_same_weights() -> None:
    generator = torch.Generator().manual_seed(5)
    pixels = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=generator)
    packed = PackedPixels(len(pixels), (3, 32, 32))
    order = torch.randperm(len(pixels), generator=generator)
    packed.put(order.tolist(), pixels[order])  # stored out of order, found by position
    assert len(packed) == 40 and packed.missing == 0
    index = torch.tensor([3, 3, 39, 0, 17])
    assert torch.equal(packed[index], pixels[index])
    assert torch.equal(packed[5:29], pixels[5:29]) and torch.equal(packed[38:], pixels[38:])
    content = torch.randint(0, 4, (40,), generator=generator)
    style = torch.randint(0, 3, (40,), generator=generator)
    config = TrainConfig(epochs=2, batch_size=8)
    from_tensor = train_classifier(pixels, content, style, config)
    from_packed = train_classifier(packed, content, style, config)
    assert from_packed.weights_sha256 == from_tensor.weights_sha256
    cpu = torch.device("cpu")
    for ours, theirs in zip(
        predict(from_packed.model, packed, device=cpu, batch_size=16),
        predict(from_tensor.model, pixels, device=cpu, batch_size=16),
        strict=True,
    ):
        assert torch.equal(ours, theirs)
    unfilled = PackedPixels(2, (3, 32, 32))
    unfilled.put([1], pixels[:1])
    assert unfilled.missing == 1
    with pytest.raises(IndexError, match="never stored"):
        unfilled[0:1]
    with pytest.raises(ValueError, match="shape"):
        unfilled.put([0], pixels[:1, :, :16])


def test_classifier_trains_on_a_capped_subset_deterministically(
    demo_lake: DemoLake, tmp_path: Path
) -> None:
    config = {"max_steps": 4, "batch_size": 8, "epochs": 60}
    weights = []
    for name in ("first", "second"):
        lakehouse = upstream_copy(demo_lake, tmp_path / name, without="style_content_classifier")
        before = held_pixels()
        found = run_asset(lakehouse, "style_content_classifier", config)
        # the step trained (its pixels were read) and kept none of them once it ended
        assert found["train_photos"] > 0 and held_pixels() <= before
        weights.append(found["data_version"])
        # 32 views chosen from a few hundred photos' views: far fewer photos than labelled
        assert 0 < found["train_photos"] <= 32
        assert found["held_out_photos"] > 0
    assert weights[0] == weights[1]
    assert weights[0] != demo_lake.upstream_found["style_content_classifier"]["data_version"]


def day_rows(day: str, ids: range) -> pl.DataFrame:
    return pl.DataFrame(
        {"photo_id": list(ids), "day": [day] * len(ids), "value": [f"{day}/{n}" for n in ids]}
    )


@pytest.mark.speed
def test_a_new_partition_is_merged_without_reading_the_table(tmp_path: Path) -> None:
    """replace_partitions into partitions the table has no file of reads none of its
    files (raw_events' first build: reading them all for each chunk of days grew the
    step's memory with the table); a partition it does hold still loses the rows the
    new ones lack."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    days = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]

    def replace(day: str, ids: range) -> dict:
        lake.replace_partitions(
            "events",
            day_rows(day, ids),
            key=["photo_id"],
            partition_column="day",
            values=[day],
            commit_info={"dagster_run_id": "test"},
        )
        return commits_since(lake, "events", lake.version("events") - 1)[-1]

    for day in days:
        commit = replace(day, range(10))
    metrics = commit["operationMetrics"]
    assert commit["operation"] == "MERGE" and metrics["num_target_rows_inserted"] == 10
    assert metrics["num_target_files_scanned"] == 0  # three days' files there, none read

    commit = replace(days[1], range(4))
    assert counted(commit).deleted == 6 and counted(commit).inserted == 0
    held = lake.read("events").group_by("day").len().sort("day")
    assert held.rows() == [(days[0], 10), (days[1], 4), (days[2], 10), (days[3], 10)]


def event_rows(day: str, ids: range) -> pl.DataFrame:
    """Rows shaped like raw_events' (its key, its day) for a day of `ids`."""
    return pl.DataFrame(
        {"event_id": [f"{day}-{n:04d}" for n in ids], "day": [day] * len(ids), "line": list(ids)}
    )


@pytest.mark.speed
def test_a_table_with_monthly_files_keeps_its_days_and_compacts_its_months(
    tmp_path: Path,
) -> None:
    """raw_events stores its days by month: a new day merges without reading the month's
    other files (their day statistics rule them out), a replaced day loses the rows it
    lacks and leaves its month's other days alone, and compacting the months leaves one
    file each with the same rows. A table created by day before keeps its layout."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    days = ["2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02"]
    info = {"dagster_run_id": "test"}

    def replace(day: str, ids: range) -> dict:
        lake.replace_partitions("raw_events", event_rows(day, ids), values=[day], commit_info=info)
        return commits_since(lake, "raw_events", lake.version("raw_events") - 1)[-1]

    for day in days:
        commit = replace(day, range(10))
        assert lake.open("raw_events").metadata().partition_columns == ["month"]  # type: ignore[union-attr]
    metrics = commit["operationMetrics"]
    assert commit["operation"] == "MERGE" and metrics["num_target_rows_inserted"] == 10
    assert metrics["num_target_files_scanned"] == 0  # 2026-11-01's file is in that month
    commit = replace(days[1], range(4))
    assert counted(commit).deleted == 6 and counted(commit).inserted == 0

    def held() -> list[tuple[str, str, int]]:
        rows = lake.read("raw_events").group_by("month", "day").len()  # type: ignore[union-attr]
        return sorted(rows.iter_rows())

    expected = [
        ("2026-10", days[0], 10),
        ("2026-10", days[1], 4),
        ("2026-11", days[2], 10),
        ("2026-11", days[3], 10),
    ]
    assert held() == expected
    assert len(lake.open("raw_events").file_uris()) == 4  # type: ignore[union-attr]
    compacted = lake.compact_months("raw_events", days, commit_info=info)
    assert compacted == {"files_removed": 4, "files_added": 2}
    files = lake.open("raw_events").file_uris()  # type: ignore[union-attr]
    assert sorted(Path(uri).parent.name for uri in files) == ["month=2026-10", "month=2026-11"]
    assert held() == expected
    version = lake.version("raw_events")
    assert lake.compact_months("raw_events", days, commit_info=info)["files_removed"] == 0
    assert lake.version("raw_events") == version  # nothing to merge: no commit

    # a lake whose raw_events was created by day (before monthly files) stays by day
    old = LakeResource(root=str(tmp_path / "old"))
    by_day = event_rows(days[0], range(3)).to_arrow()
    write_deltalake(old.table_uri("raw_events"), by_day, partition_by=["day"])
    old.replace_partitions(
        "raw_events", event_rows(days[1], range(2)), values=[days[1]], commit_info=info
    )
    assert old.open("raw_events").metadata().partition_columns == ["day"]  # type: ignore[union-attr]
    assert "month" not in old.read("raw_events").columns  # type: ignore[union-attr]
    assert old.compact_months("raw_events", days, commit_info=info)["files_removed"] == 0

    # one another tool wrote with no partition column keeps none: its days are data
    flat = LakeResource(root=str(tmp_path / "flat"))
    write_deltalake(flat.table_uri("raw_events"), event_rows(days[0], range(5)).to_arrow())
    for day, ids in ((days[1], range(3)), (days[0], range(2))):  # a new day, then a replaced one
        flat.replace_partitions("raw_events", event_rows(day, ids), values=[day], commit_info=info)
    assert flat.open("raw_events").metadata().partition_columns == []  # type: ignore[union-attr]
    rows = flat.read("raw_events")
    assert "month" not in rows.columns  # type: ignore[union-attr]
    assert sorted(rows.group_by("day").len().iter_rows()) == [(days[0], 2), (days[1], 3)]  # type: ignore[union-attr]
    assert flat.compact_months("raw_events", days, commit_info=info)["files_removed"] == 0


@pytest.mark.speed
def test_filters_on_a_text_column_read_written_and_merged_files_alike(tmp_path: Path) -> None:
    """A write stores a text column as string, a merge's new files as string_view:
    a filter on that data column reads the same rows from both kinds of file
    (deltalake's own conversion of the filters failed on the mix)."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    info = {"dagster_run_id": "test"}
    lake.upsert(
        "things", pl.DataFrame({"id": [1, 2, 3], "tag": ["a", "b", "c"]}), ["id"], commit_info=info
    )
    lake.upsert(
        "things", pl.DataFrame({"id": [10, 11], "tag": ["B", "d"]}), ["id"], commit_info=info
    )
    files = lake.open("things").file_uris()  # type: ignore[union-attr]
    kinds = {str(pq.ParquetFile(uri).schema_arrow.field("tag").type) for uri in files}
    assert "string_view" in kinds and len(kinds) == 2, kinds  # the mix is there

    def ids(filters: list[tuple[str, str, object]]) -> list[int]:
        return sorted(lake.read("things", filters=filters)["id"])  # type: ignore[index]

    assert ids([("tag", "in", ["a", "B", "d"])]) == [1, 10, 11]
    assert ids([("tag", "=", "c")]) == [3]
    assert ids([("tag", ">=", "c")]) == [3, 11]
    assert ids([("tag", "not in", ("a", "c")), ("id", "<", 11)]) == [2, 10]


@pytest.mark.speed
def test_loading_the_definitions_imports_no_torchvision() -> None:
    """torchvision's import brings torch._dynamo, sympy and triton: about 150 MiB of RSS
    in every process that loads the definitions (a run, a code server), for one grid."""
    root = Path(__file__).resolve().parents[1]
    heavy = ("torchvision", "torch._dynamo", "sympy", "triton")
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, lakehouse.definitions; "
            f"print(lakehouse.definitions.__file__, *(m for m in {heavy!r} if m in sys.modules))",
        ],
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert Path(found[0]).is_relative_to(root)  # this checkout's code was what loaded
    assert found[1:] == []


@pytest.mark.speed
def test_the_augmentation_grid_is_torchvisions_grid() -> None:
    from torchvision.utils import make_grid  # the tests may import it; the product does not

    from lakehouse.curated.preview import image_grid

    generator = torch.Generator().manual_seed(7)
    for count, per_row in [(24, 4), (7, 3), (1, 4), (5, 5), (6, 1)]:
        images = torch.randint(0, 256, (count, 3, 20, 17), dtype=torch.uint8, generator=generator)
        expected = make_grid(images, nrow=per_row, padding=2, pad_value=255)
        assert torch.equal(image_grid(images, per_row), expected), (count, per_row)

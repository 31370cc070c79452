"""Pixels are read in bounded batches: photo_classes commits one batch of images at a time,
and the classifier holds at most max_steps x batch_size training views.

Bounds are shown by counts of work (commits, rows per commit, views chosen), never by time.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lakehouse.models.assets import capped_views
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
    # rewritten, and together every image once
    commits = [counted(c) for c in commits_since(lake, "photo_classes", None)]
    assert len(commits) == found["batches"] == math.ceil(images / 16)
    added = [commit.inserted for commit in commits]
    assert max(added) == 16 and sum(added) == images
    assert sum(commit.updated + commit.deleted + commit.files_removed for commit in commits) == 0
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


def test_classifier_trains_on_a_capped_subset_deterministically(
    demo_lake: DemoLake, tmp_path: Path
) -> None:
    config = {"max_steps": 4, "batch_size": 8, "epochs": 60}
    weights = []
    for name in ("first", "second"):
        lakehouse = upstream_copy(demo_lake, tmp_path / name, without="style_content_classifier")
        found = run_asset(lakehouse, "style_content_classifier", config)
        weights.append(found["data_version"])
        # 32 views chosen from a few hundred photos' views: far fewer photos than labelled
        assert 0 < found["train_photos"] <= 32
        assert found["held_out_photos"] > 0
    assert weights[0] == weights[1]
    assert weights[0] != demo_lake.upstream_found["style_content_classifier"]["data_version"]

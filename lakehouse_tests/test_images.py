"""Curated images, augmented tensors, the classifier and photo_classes, through Dagster."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from lakehouse.curated.augment import tensors_from_arrow
from lakehouse.curated.preview import augmentation_grid, stored_images
from lakehouse.curated.recipe import RECIPE
from lakehouse.curated.views import (
    VIEW_COLUMNS,
    VIEW_KEY,
    StoredViews,
    read_views,
    view_batches,
)
from lakehouse.definitions import defs
from lakehouse.lake.resource import may_hold
from lakehouse.models.classifier import TrainConfig, load_classifier, predict, train_classifier
from lakehouse_tests.conftest import DemoLake, Lakehouse
from lakehouse_tests.delta_counts import NOTHING, left_unchanged, versions, written_since

pytestmark = pytest.mark.images

IMAGE_ASSETS = {
    "raw_objects",
    "raw_users",
    "raw_photos",
    "raw_photo_labels",
    "quarantine",
    "images",
    "augmented_tensors",
    "style_content_classifier",
    "photo_classes",
}


@pytest.fixture
def demo_world(demo_lake: DemoLake) -> Iterator[tuple[Lakehouse, dict[str, dict]]]:
    """The shared default-size lake, as of its image and classifier assets (read only)."""
    with left_unchanged(demo_lake.lakehouse.lake_resource, "the session's demo lake"):
        yield demo_lake.lakehouse, demo_lake.upstream_found


def test_classifier_learns_content_and_style(demo_world) -> None:
    _, found = demo_world
    metrics = found["style_content_classifier"]
    assert metrics["held_out_photos"] >= 20
    assert metrics["content_accuracy"] >= 0.9
    assert metrics["style_accuracy"] >= 0.8


def test_weights_are_content_addressed(demo_world) -> None:
    lakehouse, found = demo_world
    key = found["style_content_classifier"]["weights_key"]
    weights = lakehouse.lake_resource.get_object(key)
    assert key.endswith(hashlib.sha256(weights).hexdigest())
    assert found["style_content_classifier"]["data_version"] == key.rsplit("/", 1)[1]
    # what the UI links to opens: an absolute file:// URI of the same object
    assert found["style_content_classifier"]["weights"] == (lakehouse.lake / key).resolve().as_uri()


def test_every_image_is_classified_once(demo_world) -> None:
    lakehouse, found = demo_world
    lake = lakehouse.lake_resource
    classes = lake.read("photo_classes")
    images = lake.read("images")
    assert sorted(classes["sha256"]) == sorted(images["sha256"])
    assert classes["model_version"].unique().to_list() == [found["photo_classes"]["model_version"]]
    sums = classes["content_probs"].list.sum()
    assert ((sums - 1.0).abs() < 1e-4).all()
    assert set(classes["content_label"]) <= {"circle", "square", "triangle", "stripes"}


def test_undecodable_objects_are_quarantined_and_the_rest_goes_on(demo_world) -> None:
    lakehouse, _ = demo_world
    quarantine = lakehouse.lake_resource.read("quarantine").filter(pl.col("source") == "images")
    assert quarantine.height == 1
    assert "truncated" in quarantine["reason"][0]
    images = lakehouse.lake_resource.read("images")
    assert quarantine["sha256"][0] not in images["sha256"].to_list()
    assert images.height == lakehouse.lake_resource.read("raw_objects")["sha256"].n_unique() - 1


def test_augmented_tensors_are_k_per_image_and_typed(demo_world) -> None:
    lakehouse, found = demo_world
    tensors = lakehouse.lake_resource.read("augmented_tensors")
    per_image = tensors.group_by("sha256").len()["len"].unique().to_list()
    assert per_image == [4]
    assert tensors["dtype"].unique().to_list() == ["uint8"]
    assert tensors["shape"].cast(pl.List(pl.String)).list.join(",").unique().to_list() == [
        "3,96,96"
    ]
    assert "data:image/png;base64," in found["augmented_tensors"]["augmentation_grid"]


def plain_views_of(images: pl.DataFrame) -> pl.DataFrame:
    """The keys of aug_index 0 (the plain resize) of these images."""
    return images.select("sha256", aug_index=pl.lit(0))


def test_cpu_inference_agrees_across_batch_sizes(demo_world) -> None:
    lakehouse, found = demo_world
    lake = lakehouse.lake_resource
    model = load_classifier(lake.get_object(found["style_content_classifier"]["weights_key"]))
    views = read_views(lake, plain_views_of(lake.read("images").head(40)))
    shas, pixels = views.keys["sha256"], views.pixels
    results = [
        predict(model, pixels, device=torch.device("cpu"), batch_size=size) for size in (1, 7, 64)
    ]
    for content, style in results[1:]:
        assert torch.allclose(content, results[0][0], atol=1e-5)
        assert torch.allclose(style, results[0][1], atol=1e-5)
    stored = lake.read("photo_classes").filter(pl.col("sha256").is_in(shas)).sort("sha256")
    assert torch.allclose(torch.tensor(stored["content_probs"].to_list()), results[0][0], atol=1e-5)


@pytest.mark.gpu
def test_cuda_and_cpu_agree(cuda: None, demo_world) -> None:
    lakehouse, found = demo_world
    lake = lakehouse.lake_resource
    model = load_classifier(lake.get_object(found["style_content_classifier"]["weights_key"]))
    pixels = read_views(lake, plain_views_of(lake.read("images"))).pixels
    cpu = predict(model, pixels, device=torch.device("cpu"), batch_size=64)
    gpu = predict(model, pixels, device=torch.device("cuda"), batch_size=64, mixed_precision=True)
    assert torch.allclose(cpu[0], gpu[0], atol=1e-3)
    assert torch.allclose(cpu[1], gpu[1], atol=1e-3)


def test_training_on_cpu_is_deterministic() -> None:
    generator = torch.Generator().manual_seed(3)
    pixels = torch.randint(0, 256, (24, 3, 96, 96), dtype=torch.uint8, generator=generator)
    content = torch.randint(0, 4, (24,), generator=generator)
    style = torch.randint(0, 3, (24,), generator=generator)
    config = TrainConfig(epochs=2, batch_size=8)
    first = train_classifier(pixels, content, style, config)
    second = train_classifier(pixels, content, style, config)
    assert first.weights_sha256 == second.weights_sha256
    other = train_classifier(pixels, content, style, TrainConfig(epochs=2, batch_size=8, seed=1))
    assert other.weights_sha256 != first.weights_sha256


def test_gpu_steps_are_tagged_for_the_gpu_pool_k8s_and_celery() -> None:
    graph = defs.resolve_asset_graph()
    for name in ("photo_classes", "style_content_classifier"):
        node = graph.get(dg.AssetKey(name))
        assets_def = graph.assets_def_for_key(dg.AssetKey(name))
        op = assets_def.node_def
        assert op.pool == "gpu", name
        assert op.tags["dagster-celery/queue"] == "gpu"
        k8s = op.tags["dagster-k8s/config"]
        k8s = k8s if isinstance(k8s, dict) else json.loads(k8s)
        assert k8s["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert node.group_name in ("curated", "models")


def test_incremental_second_run_zero_then_one_new_photo_k_rows(lakehouse: Lakehouse) -> None:
    lakehouse.materialize(select=IMAGE_ASSETS)
    lake = lakehouse.lake_resource
    before = versions(lake)
    lakehouse.materialize(select=IMAGE_ASSETS)
    assert written_since(lake, before) == dict.fromkeys(before, NOTHING)
    assert versions(lake) == before

    registry = lakehouse.lake_resource.read("raw_objects")
    source = lakehouse.sources / registry.filter(pl.col("media_type") == "image/png")["key"][0]
    new = lakehouse.sources / "photos" / "new" / "fresh.png"
    new.parent.mkdir()
    with Image.open(source) as image:
        image.transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(new)
    shutil.copy(new, new.with_name("same-bytes-other-key.png"))

    lakehouse.materialize(select=IMAGE_ASSETS)
    # from Delta's commit metrics: two objects hashed and registered, one image (same bytes
    # under two keys), its k=4 views, its one class row; nothing else, the classifier kept
    changed = {name: w for name, w in written_since(lake, before).items() if w != NOTHING}
    assert {name: (w.inserted, w.updated, w.deleted) for name, w in changed.items()} == {
        "_object_hashes": (2, 0, 0),
        "raw_objects": (2, 0, 0),
        "images": (1, 0, 0),
        "augmented_tensors": (4, 0, 0),
        "photo_classes": (1, 0, 0),
    }
    image = lakehouse.lake_resource.read("images").filter(
        pl.col("keys").list.contains("photos/new/fresh.png")
    )
    assert sorted(image["keys"][0].to_list()) == [
        "photos/new/fresh.png",
        "photos/new/same-bytes-other-key.png",
    ]


def test_show_augmentations_writes_a_png(demo_world, tmp_path: Path) -> None:

    lakehouse, _ = demo_world
    out = tmp_path / "grid.png"
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "lakehouse"),
            "show-augmentations",
            "--n",
            "3",
            "--out",
            str(out),
        ],
        env={**os.environ, "LAKEHOUSE_LAKE": str(lakehouse.lake)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    with Image.open(out) as grid:
        assert grid.format == "PNG" and grid.height > grid.width / 2


@pytest.mark.speed
def test_the_augmentation_grid_draws_the_images_asked_for(demo_world) -> None:
    """A row per image asked for (its k views), drawn from those views' pixels only; none
    for images without views."""
    lakehouse, _ = demo_world
    lake = lakehouse.lake_resource
    shas, k = stored_images(lake, 3)
    assert len(shas) == 3 and k == 4 and shas == sorted(shas)
    png = augmentation_grid(lake, shas[1:], k)
    assert png is not None
    with Image.open(io.BytesIO(png)) as grid:
        cell = RECIPE.size + 2  # each image and the padding after it
        assert (grid.width, grid.height) == (2 + k * cell, 2 + 2 * cell)
    assert augmentation_grid(lake, ["0" * 64], k) is None


def test_view_batches_are_the_stored_rows_of_the_views_asked_for(demo_world) -> None:
    """Read row group by row group (not Arrow's scanner): the same rows a whole read finds,
    in batches of at most per_batch rows; a view not stored is not yielded."""
    lakehouse, _ = demo_world
    lake = lakehouse.lake_resource
    stored = (
        lake.read("augmented_tensors")
        .filter(pl.col("recipe_version") == RECIPE.version)
        .select(VIEW_COLUMNS)
    )
    shas = stored["sha256"].unique().sort()
    asked = pl.concat(
        [
            stored.filter(
                pl.col("sha256").is_in(shas.gather_every(2).implode())
                & pl.col("aug_index").is_in([1, 3])
            ).select(VIEW_KEY),
            pl.DataFrame(
                {"sha256": ["0" * 64], "aug_index": [0]}, schema=stored.select(VIEW_KEY).schema
            ),
        ]
    )
    batches = list(view_batches(lake, asked, per_batch=7))
    assert batches and all(batch.height <= 7 for batch in batches)
    assert all(batch.pixels.shape[0] == batch.height for batch in batches)
    every = StoredViews.concat(batches)
    rows = every.keys.with_row_index("row").sort(VIEW_KEY)["row"].to_numpy().astype("int64")
    order = torch.from_numpy(rows)
    expected = stored.join(asked, on=VIEW_KEY, how="semi").sort(VIEW_KEY)
    assert every.height == asked.height - 1 > 0
    assert every.keys[order.numpy()].equals(expected.select(VIEW_KEY))
    shape = expected["shape"][0].to_list()
    assert torch.equal(
        every.pixels[order], tensors_from_arrow(expected.to_arrow()["tensor"], shape)
    )
    assert read_views(lake, asked).keys.equals(expected.select(VIEW_KEY))


def test_row_groups_are_skipped_by_their_sha256_statistics(tmp_path: Path) -> None:
    keys = [f"{i:064x}" for i in range(30)]
    pq.write_table(pa.table({"sha256": keys}), tmp_path / "a.parquet", row_group_size=10)
    pq.write_table(
        pa.table({"sha256": keys}),
        tmp_path / "b.parquet",
        row_group_size=10,
        write_statistics=False,
    )
    meta = pq.ParquetFile(tmp_path / "a.parquet").metadata
    holding = [
        group
        for group in range(meta.num_row_groups)
        if may_hold(meta.row_group(group), "sha256", keys[12], keys[14])
    ]
    assert holding == [1]
    assert may_hold(meta.row_group(0), "sha256", keys[9], keys[25])
    assert not may_hold(meta.row_group(2), "sha256", keys[0], keys[19])
    bare = pq.ParquetFile(tmp_path / "b.parquet").metadata
    assert all(may_hold(bare.row_group(g), "sha256", keys[0], keys[0]) for g in range(3))

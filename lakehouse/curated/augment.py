"""Versioned, deterministic augmentations, computed in parallel and stored as uint8 tensors.

A row's random state comes only from (sha256, aug_index, recipe_version), so
the same image gives the same tensor bytes in any run, order or worker count.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from lakehouse.curated.decode import DecodeError, decode_image
from lakehouse.failpoints import failpoint
from lakehouse.resources.reads import read_object
from lakehouse.vocabulary import INPUT_SIZE

TENSOR_SCHEMA: dict[str, pl.DataType] = {
    "sha256": pl.String(),
    "aug_index": pl.Int32(),
    "recipe": pl.String(),
    "recipe_version": pl.String(),
    "seed": pl.Int64(),
    "tensor": pl.Binary(),
    "dtype": pl.String(),
    "shape": pl.List(pl.Int32()),
}


@dataclass(frozen=True)
class Recipe:
    """A named augmentation recipe; bump `version` whenever the transforms change."""

    name: str = "photo-aug"
    version: str = "1"
    size: int = INPUT_SIZE

    def transforms(self) -> tuple[v2.Transform, v2.Transform]:
        """(plain, random), built once per recipe and process."""
        return _transforms(self)

    def plain(self) -> v2.Transform:
        """Index 0: the image resized, nothing random."""
        return v2.Resize((self.size, self.size), antialias=True)

    def random(self) -> v2.Transform:
        """Indices 1..k-1: crops, flips, small rotations and light photometric noise."""
        return v2.Compose(
            [
                v2.RandomResizedCrop((self.size, self.size), scale=(0.7, 1.0), antialias=True),
                v2.RandomHorizontalFlip(),
                v2.RandomRotation(10),
                v2.ColorJitter(brightness=0.1, contrast=0.1),
            ]
        )


RECIPE = Recipe()


@functools.cache
def _transforms(recipe: Recipe) -> tuple[v2.Transform, v2.Transform]:
    return recipe.plain(), recipe.random()


def row_seed(sha256: str, aug_index: int, recipe_version: str) -> int:
    """The seed of one augmented row: a function of content, index and recipe only."""
    digest = hashlib.sha256(f"{sha256}:{aug_index}:{recipe_version}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def augment(image: torch.Tensor, sha256: str, k: int, recipe: Recipe) -> list[torch.Tensor]:
    """k uint8 C×H×W tensors: the plain resize, then k-1 seeded random views."""
    plain, random = recipe.transforms()
    views = [plain(image)]
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays untouched
        for index in range(1, k):
            torch.default_generator.manual_seed(row_seed(sha256, index, recipe.version))
            views.append(random(image))
    return [view.contiguous() for view in views]


class ImageItems(Dataset):
    """Decode + augment one image per item, read from the object store by key."""

    def __init__(
        self, store_uri: str, items: Sequence[tuple[str, str]], k: int, recipe: Recipe
    ) -> None:
        self.store_uri, self.items, self.k, self.recipe = store_uri, list(items), k, recipe

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[str, torch.Tensor | str]:
        sha256, key = self.items[index]
        failpoint("augment/image")
        try:
            decoded = decode_image(read_object(self.store_uri, key))
        except DecodeError as exc:
            return sha256, str(exc)
        pixels = torch.from_numpy(np.asarray(decoded.image).copy()).permute(2, 0, 1)
        return sha256, torch.stack(augment(pixels, sha256, self.k, self.recipe))


def rows_and_failures(
    batch: list[tuple[str, torch.Tensor | str]], recipe: Recipe
) -> tuple[pl.DataFrame, list[tuple[str, str]]]:
    """A loader batch as (tensor rows, failures), built in the worker that made it: the
    main process only writes, instead of also copying every view into rows."""
    good = [(sha, views) for sha, views in batch if isinstance(views, torch.Tensor)]
    failed = [(sha, views) for sha, views in batch if isinstance(views, str)]
    return tensor_rows(good, recipe), failed


def augmented_batches(
    store_uri: str,
    items: Sequence[tuple[str, str]],
    *,
    k: int,
    recipe: Recipe,
    workers: int,
    images_per_batch: int = 64,
) -> Iterator[tuple[pl.DataFrame, list[tuple[str, str]]]]:
    """Stream (tensor rows, failures) batch by batch, so memory stays flat.

    Workers are spawned, not forked: a forked child of a process that used
    deltalake panics (see VERIFIED.md).
    """
    loader = DataLoader(
        ImageItems(store_uri, items, k, recipe),
        batch_size=images_per_batch,
        num_workers=workers,
        collate_fn=functools.partial(rows_and_failures, recipe=recipe),
        multiprocessing_context="spawn" if workers > 0 else None,
        persistent_workers=False,
    )
    yield from loader


def tensor_rows(images: list[tuple[str, torch.Tensor]], recipe: Recipe) -> pl.DataFrame:
    """One row per view: the uint8 bytes as one Arrow binary value each."""
    rows = {name: [] for name in TENSOR_SCHEMA}
    for sha256, views in images:
        for index, view in enumerate(views):
            rows["sha256"].append(sha256)
            rows["aug_index"].append(index)
            rows["recipe"].append(recipe.name)
            rows["recipe_version"].append(recipe.version)
            rows["seed"].append(row_seed(sha256, index, recipe.version) if index else 0)
            rows["tensor"].append(view.numpy().tobytes())
            rows["dtype"].append("uint8")
            rows["shape"].append(list(view.shape))
    return pl.DataFrame(rows, schema=TENSOR_SCHEMA)


def tensors_from_arrow(column: pa.ChunkedArray | pa.Array, shape: Sequence[int]) -> torch.Tensor:
    """N×C×H×W uint8 tensor straight from the Arrow value buffer (no Python lists)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(array) == 0:
        return torch.empty((0, *shape), dtype=torch.uint8)
    if not (pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)):
        array = array.cast(pa.large_binary())
    per_row = int(np.prod(shape))
    offset_type = np.int64 if pa.types.is_large_binary(array.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], dtype=offset_type)
    offsets = offsets[array.offset : array.offset + len(array) + 1]
    if not np.all(np.diff(offsets) == per_row):
        raise ValueError(f"tensor rows are not all of shape {tuple(shape)}")
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return torch.from_numpy(data.reshape(len(array), *shape).copy())

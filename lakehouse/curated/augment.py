"""Versioned, deterministic augmentations, computed in parallel and stored as uint8 tensors.

A row's random state comes only from (sha256, aug_index, recipe_version), so
the same image gives the same tensor bytes in any run, order or worker count.
The recipe itself and the loader workers' code live in `lakehouse.curated.recipe`
(no polars there); this module turns the workers' batches into table rows.
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import polars as pl
import pyarrow as pa
import torch

from lakehouse.curated.recipe import RECIPE, Recipe, ViewBatch, augment, augment_batch, row_seed

__all__ = [
    "RECIPE",
    "Recipe",
    "augment",
    "augmented_batches",
    "commit_batches",
    "row_seed",
    "tensor_rows",
]

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


def augmented_batches(
    store_uri: str,
    items: Sequence[tuple[str, str]],
    *,
    k: int,
    recipe: Recipe,
    workers: int,
    images_per_batch: int = 32,
    images_ahead: int = 512,
) -> Iterator[tuple[pl.DataFrame, list[tuple[str, str]]]]:
    """Stream (tensor rows, failures) batch by batch, in order, so memory stays flat.

    With workers, up to `images_ahead` images (at least two batches a worker) are in
    flight: the workers go on computing while the caller writes, so a commit of a few
    hundred images does not leave them idle (about 110 kB an image is held). Workers
    are spawned, not forked (a forked child of a process that used deltalake panics,
    see VERIFIED.md), and import only `lakehouse.curated.recipe`.
    """
    batches = [items[i : i + images_per_batch] for i in range(0, len(items), images_per_batch)]
    if workers <= 0:
        for chunk in batches:
            batch = augment_batch(store_uri, chunk, k, recipe)
            yield tensor_rows(batch, k, recipe), batch.failed
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        todo = iter(batches)
        pending = deque(
            pool.submit(augment_batch, store_uri, chunk, k, recipe)
            for chunk in itertools.islice(todo, max(2 * workers, images_ahead // images_per_batch))
        )
        while pending:
            batch = pending.popleft().result()
            following = next(todo, None)
            if following is not None:
                pending.append(pool.submit(augment_batch, store_uri, following, k, recipe))
            yield tensor_rows(batch, k, recipe), batch.failed


def commit_batches(
    store_uri: str,
    items: Sequence[tuple[str, str]],
    *,
    k: int,
    recipe: Recipe,
    workers: int,
    images_per_batch: int = 32,
    images_per_commit: int = 256,
) -> Iterator[pl.DataFrame]:
    """Tensor rows in groups of about `images_per_commit` images, one Delta commit each:
    loader batches stay small (even work across workers), commits larger (fewer files).

    Every item was decoded before (the images table holds it): one that fails now stops
    the run instead of leaving a hole.
    """
    pending: list[pl.DataFrame] = []
    held = 0
    batches = augmented_batches(
        store_uri, items, k=k, recipe=recipe, workers=workers, images_per_batch=images_per_batch
    )
    for rows, failed in batches:
        if failed:
            raise RuntimeError(f"images that decoded before failed now: {failed[:5]}")
        pending.append(rows)
        held += rows.height
        if held >= images_per_commit * k:
            yield pl.concat(pending)
            pending, held = [], 0
    if pending:
        yield pl.concat(pending)


def tensor_rows(batch: ViewBatch, k: int, recipe: Recipe) -> pl.DataFrame:
    """One row per view, built column-wise: the uint8 C×H×W bytes of each view are a
    slice of the batch's one buffer (no per-view Python objects)."""
    images = len(batch.sha256)
    if not images:
        return pl.DataFrame(schema=TENSOR_SCHEMA)
    pixels = batch.pixels.reshape(images * k, -1)
    per_row = pixels.shape[1]
    offsets = np.arange(images * k + 1, dtype=np.int64) * per_row
    tensor = pa.Array.from_buffers(
        pa.large_binary(), images * k, [None, pa.py_buffer(offsets), pa.py_buffer(pixels)]
    )
    shas = np.repeat(np.asarray(batch.sha256, dtype=object), k)
    index = np.tile(np.arange(k, dtype=np.int32), images)
    seeds = [
        row_seed(sha, int(i), recipe.version) if i else 0
        for sha, i in zip(shas, index, strict=True)
    ]
    shape = list(batch.pixels.shape[2:])
    return pl.DataFrame(
        {
            "sha256": pl.Series(shas, dtype=pl.String),
            "aug_index": index,
            "seed": pl.Series(seeds, dtype=pl.Int64),
            "tensor": pl.from_arrow(tensor),
        }
    ).select(
        "sha256",
        "aug_index",
        recipe=pl.lit(recipe.name),
        recipe_version=pl.lit(recipe.version),
        seed="seed",
        tensor=pl.col("tensor").cast(pl.Binary),
        dtype=pl.lit("uint8"),
        shape=pl.lit(pl.Series([shape], dtype=pl.List(pl.Int32))).first(),
    )


def tensors_from_arrow(
    column: pa.ChunkedArray | pa.Array, shape: Sequence[int], rows: np.ndarray | None = None
) -> torch.Tensor:
    """N×C×H×W uint8 tensor straight from the Arrow value buffer (no Python lists): of
    every row, or of `rows` (positions, in their order) only, copying just those pixels."""
    if isinstance(column, pa.ChunkedArray):
        array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    else:
        array = column
    picked = np.arange(len(array)) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(picked) == 0:
        return torch.empty((0, *shape), dtype=torch.uint8)
    if not (pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)):
        array = array.cast(pa.large_binary())
    per_row = int(np.prod(shape))
    offset_type = np.int64 if pa.types.is_large_binary(array.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], dtype=offset_type)
    offsets = offsets[array.offset : array.offset + len(array) + 1].astype(np.int64)
    starts = offsets[picked]
    if not np.all(offsets[picked + 1] - starts == per_row):
        raise ValueError(f"tensor rows are not all of shape {tuple(shape)}")
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)
    if np.all(np.diff(offsets) == per_row):  # every row this size: one strided gather
        grid = data[offsets[0] : offsets[-1]].reshape(len(array), per_row)
        out = grid.copy() if rows is None else grid[picked]
    else:  # rows of other shapes between them (another recipe's): row by row
        out = np.empty((len(picked), per_row), dtype=np.uint8)
        for row, begin in enumerate(starts.tolist()):
            out[row] = data[begin : begin + per_row]
    return torch.from_numpy(out).reshape(len(picked), *shape)

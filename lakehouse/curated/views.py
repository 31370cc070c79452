"""Stored views read back batch by batch: memory stays bounded at any table size.

The tensor table is most of the lake's bytes (about 27.6 kB a view, k views an
image), so no reader holds all of it: each names the views it wants and gets
their pixels in batches of a bounded number of rows, in one pass over the table.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import polars as pl
import torch

from lakehouse.curated.augment import RECIPE, tensors_from_arrow
from lakehouse.lake import LakeResource
from lakehouse.lake.tables import AUGMENTED_TENSORS

VIEW_KEY = ["sha256", "aug_index"]
VIEW_COLUMNS = [*VIEW_KEY, "tensor", "shape"]
KEY_TYPES = [pl.col("sha256").cast(pl.String), pl.col("aug_index").cast(pl.Int32)]
VIEWS_PER_BATCH = 1024  # about 28 MB of pixels; allocators keep a few copies' worth


@dataclass(frozen=True)
class StoredViews:
    """Stored views: their keys (sha256, aug_index) and their N×C×H×W uint8 pixels,
    row i of `keys` for pixels[i]."""

    keys: pl.DataFrame
    pixels: torch.Tensor

    @property
    def height(self) -> int:
        return self.keys.height

    @staticmethod
    def concat(parts: Sequence[StoredViews]) -> StoredViews:
        if len(parts) == 1:
            return parts[0]
        return StoredViews(pl.concat([p.keys for p in parts]), torch.cat([p.pixels for p in parts]))

    def slice(self, start: int, length: int | None = None) -> StoredViews:
        stop = self.height if length is None else start + length
        return StoredViews(self.keys.slice(start, stop - start), self.pixels[start:stop])


def view_batches(
    lake: LakeResource, views: pl.DataFrame, per_batch: int = VIEWS_PER_BATCH
) -> Iterator[StoredViews]:
    """The stored pixels of `views` under the current recipe, at most `per_batch` views
    at a time, in one pass over the table; a view not stored is not yielded. Keys are
    matched before any pixel is touched, and the pixels wanted are copied once out of
    each row group's Arrow buffer: about two batches' worth of pixels are held."""
    if per_batch < 1:
        raise ValueError(f"per_batch must be at least 1, not {per_batch}")
    wanted = keys_of(views).unique()
    if wanted.is_empty():
        return
    pending: list[StoredViews] = []
    held = 0
    for found in stored_views(lake, wanted):
        pending.append(found)
        held += found.height
        while held >= per_batch:
            joined = StoredViews.concat(pending)
            yield joined.slice(0, per_batch)
            pending = [joined.slice(per_batch)]
            held = pending[0].height
    if held:
        yield StoredViews.concat(pending)


def stored_views(lake: LakeResource, wanted: pl.DataFrame) -> Iterator[StoredViews]:
    """The `wanted` views (unique keys) under the current recipe that each row group of
    the tensor table holds, one row group at a time (`LakeResource.row_groups`). The
    files and row groups whose sha256 statistics miss the wanted range are skipped; the
    keys are matched here, after reading: Arrow compares an is_in set on a string column
    with the files' string_view statistics and finds no kernel for that (pyarrow 26,
    deltalake 1.6). A photo's views sit in a row group or two: the one-photo rerun
    decodes those."""
    columns = [*VIEW_COLUMNS, "recipe_version"]
    shas = wanted["sha256"]
    current = (pl.col("recipe_version") == RECIPE.version) & pl.col("aug_index").is_in(
        wanted["aug_index"].unique().implode()
    )
    for group in lake.row_groups(AUGMENTED_TENSORS, columns, ("sha256", shas.min(), shas.max())):
        keys = pl.from_arrow(group.select([*VIEW_KEY, "recipe_version"]))
        hits = (
            keys.with_row_index("row")  # type: ignore[union-attr]
            .filter(current)
            .with_columns(KEY_TYPES)
            .join(wanted, on=VIEW_KEY, how="semi")
        )
        if hits.is_empty():
            continue
        rows = hits["row"].to_numpy()
        shape = group["shape"][int(rows[0])].as_py()
        yield StoredViews(hits.select(VIEW_KEY), tensors_from_arrow(group["tensor"], shape, rows))


def keys_of(views: pl.DataFrame) -> pl.DataFrame:
    """The view key columns, in the tensor table's types."""
    return views.select(KEY_TYPES)


def read_views(lake: LakeResource, views: pl.DataFrame) -> StoredViews:
    """The stored pixels of a few views, sorted by key: for previews and checks; large
    sets go through `view_batches`."""
    found = list(view_batches(lake, views))
    if not found:
        empty = pl.DataFrame(schema={"sha256": pl.String, "aug_index": pl.Int32})
        return StoredViews(empty, torch.empty((0, 3, RECIPE.size, RECIPE.size), dtype=torch.uint8))
    every = StoredViews.concat(found)
    order = every.keys.with_row_index("row").sort(VIEW_KEY)["row"].to_numpy()
    return StoredViews(every.keys[order], every.pixels[torch.from_numpy(order.astype("int64"))])

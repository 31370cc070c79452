"""Stored views read back batch by batch: memory stays bounded at any table size.

The tensor table is most of the lake's bytes (about 27.6 kB a view, k views an
image), so no reader holds all of it: each names the views it wants and gets
their pixels in batches of a bounded number of rows, in one pass over the table.
"""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import torch

from lakehouse.curated.augment import RECIPE, tensors_from_arrow
from lakehouse.lake import LakeResource
from lakehouse.lake.tables import AUGMENTED_TENSORS

VIEW_KEY = ["sha256", "aug_index"]
VIEW_COLUMNS = [*VIEW_KEY, "tensor", "shape"]
VIEWS_PER_BATCH = 1024  # about 28 MB of pixels; allocators keep a few copies' worth


def view_batches(
    lake: LakeResource, views: pl.DataFrame, per_batch: int = VIEWS_PER_BATCH
) -> Iterator[pl.DataFrame]:
    """The stored rows (sha256, aug_index, tensor, shape) of `views` under the current
    recipe, at most `per_batch` rows at a time; a view not stored is not yielded."""
    if per_batch < 1:
        raise ValueError(f"per_batch must be at least 1, not {per_batch}")
    wanted = keys_of(views).unique()
    if wanted.is_empty():
        return
    # sha256 is matched after reading (the files and row groups whose statistics miss the
    # wanted range are skipped): see stored_row_groups
    indices = wanted["aug_index"].unique().to_list()
    shas = wanted["sha256"]
    pending: list[pl.DataFrame] = []
    held = 0
    for rows in stored_row_groups(lake, indices, shas.min(), shas.max()):
        pending.append(rows.join(wanted, on=VIEW_KEY, how="semi"))
        held += pending[-1].height
        while held >= per_batch:
            joined = pl.concat(pending)
            yield joined.head(per_batch)
            pending = [joined.slice(per_batch)]
            held = pending[0].height
    if held:
        yield pl.concat(pending)


def stored_row_groups(
    lake: LakeResource, indices: list[int], low: str, high: str
) -> Iterator[pl.DataFrame]:
    """The rows under the current recipe with an aug_index in `indices` of each row
    group of the tensor table that may hold a sha256 in [low, high], one row group at a
    time (`LakeResource.row_groups`). sha256 is matched against the files' and row
    groups' statistics there and by the caller after reading: Arrow compares an is_in
    set on a string column with the files' string_view statistics and finds no kernel
    for that (pyarrow 26, deltalake 1.6). A photo's views sit in a row group or two:
    the one-photo rerun decodes those."""
    columns = [*VIEW_COLUMNS, "recipe_version"]
    wanted = (pl.col("recipe_version") == RECIPE.version) & pl.col("aug_index").is_in(indices)
    for group in lake.row_groups(AUGMENTED_TENSORS, columns, ("sha256", low, high)):
        rows = group.filter(wanted).select(VIEW_COLUMNS)
        if rows.height:
            yield rows


def keys_of(views: pl.DataFrame) -> pl.DataFrame:
    """The view key columns, in the tensor table's types."""
    return views.select(pl.col("sha256").cast(pl.String), pl.col("aug_index").cast(pl.Int32))


def view_pixels(rows: pl.DataFrame) -> torch.Tensor:
    """N×C×H×W uint8 pixels of stored view rows, in their order."""
    shape = rows["shape"][0].to_list() if rows.height else [3, RECIPE.size, RECIPE.size]
    return tensors_from_arrow(rows.to_arrow()["tensor"], shape)


def read_views(lake: LakeResource, views: pl.DataFrame) -> pl.DataFrame:
    """The stored rows of a few views, sorted by key: for previews and checks; large
    sets go through `view_batches`."""
    found = list(view_batches(lake, views))
    if not found:
        return pl.DataFrame(schema={"sha256": pl.String, "aug_index": pl.Int32})
    return pl.concat(found).sort(VIEW_KEY)

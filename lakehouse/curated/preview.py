"""A picture of the augmentations: originals and their views in one grid."""

from __future__ import annotations

import io
from collections.abc import Sequence

import polars as pl
import torch
from PIL import Image

from lakehouse.curated.augment import RECIPE
from lakehouse.curated.views import VIEW_KEY, read_views
from lakehouse.lake import LakeResource
from lakehouse.lake.tables import AUGMENTED_TENSORS


def stored_images(lake: LakeResource, n: int) -> tuple[list[str], int]:
    """The first `n` images by sha256 with views under the current recipe, and how many
    views the first has (k); ([], 0) before any."""
    keys = lake.read(
        AUGMENTED_TENSORS, columns=VIEW_KEY, filters=[("recipe_version", "=", RECIPE.version)]
    )
    if keys is None or keys.is_empty():
        return [], 0
    chosen = keys["sha256"].unique().sort().head(n)
    return chosen.to_list(), keys.filter(pl.col("sha256") == chosen[0]).height


def augmentation_grid(lake: LakeResource, shas: Sequence[str], k: int) -> bytes | None:
    """PNG bytes: one row per image of `shas` that has views, its `k` views side by side
    (None when none has). Only those views' pixels are read."""
    views = pl.DataFrame({"sha256": list(shas)}, schema={"sha256": pl.String}).join(
        pl.DataFrame({"aug_index": list(range(k))}, schema={"aug_index": pl.Int32}), how="cross"
    )
    picked = read_views(lake, views)
    if picked.height == 0:
        return None
    per_row = picked.keys.filter(pl.col("sha256") == picked.keys["sha256"][0]).height
    grid = image_grid(picked.pixels, per_row=per_row)
    buffer = io.BytesIO()
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def image_grid(
    images: torch.Tensor, per_row: int, padding: int = 2, pad_value: int = 255
) -> torch.Tensor:
    """N×C×H×W images tiled `per_row` to a row on a `pad_value` background, `padding`
    pixels around each: torchvision's `make_grid` without importing torchvision, whose
    import (torch._dynamo, sympy, triton) costs every process that loads the
    definitions about 160 MiB and 3 s."""
    count, channels, height, width = images.shape
    if count == 1:
        return images[0]  # as make_grid does: one image, no frame
    columns = min(per_row, count)
    rows = -(-count // columns)
    cell_h, cell_w = height + padding, width + padding
    grid = images.new_full(
        (channels, cell_h * rows + padding, cell_w * columns + padding), pad_value
    )
    for index, image in enumerate(images):
        top, left = (index // columns) * cell_h + padding, (index % columns) * cell_w + padding
        grid[:, top : top + height, left : left + width] = image
    return grid

"""A picture of the augmentations: originals and their views in one grid."""

from __future__ import annotations

import io

import polars as pl
from PIL import Image
from torchvision.utils import make_grid

from lakehouse.curated.augment import RECIPE
from lakehouse.curated.views import VIEW_KEY, read_views, view_pixels
from lakehouse.lake import LakeResource
from lakehouse.lake.tables import AUGMENTED_TENSORS


def augmentation_grid(lake: LakeResource, n: int = 6) -> bytes | None:
    """PNG bytes: one row per image (first `n` by sha256), its k views side by side.
    Only those images' pixels are read: the keys pick them."""
    keys = lake.read(
        AUGMENTED_TENSORS,
        columns=VIEW_KEY,
        filters=[("recipe_version", "=", RECIPE.version)],
    )
    if keys is None or keys.is_empty():
        return None
    chosen = keys["sha256"].unique().sort().head(n)
    picked = read_views(lake, keys.filter(pl.col("sha256").is_in(chosen.implode())))
    k = picked.filter(pl.col("sha256") == chosen[0]).height
    grid = make_grid(view_pixels(picked), nrow=k, padding=2, pad_value=255)
    buffer = io.BytesIO()
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    return buffer.getvalue()

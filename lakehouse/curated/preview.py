"""A picture of the augmentations: originals and their views in one grid."""

from __future__ import annotations

import base64
import io

import polars as pl
from PIL import Image
from torchvision.utils import make_grid

from lakehouse.curated.augment import RECIPE, tensors_from_arrow
from lakehouse.resources.lake import LakeResource

TENSORS_TABLE = "augmented_tensors"


def augmentation_grid(lake: LakeResource, n: int = 6) -> bytes | None:
    """PNG bytes: one row per image (first `n` by sha256), its k views side by side."""
    rows = lake.read(
        TENSORS_TABLE,
        columns=["sha256", "aug_index", "tensor", "shape"],
        filters=[("recipe_version", "=", RECIPE.version)],
    )
    if rows is None or rows.is_empty():
        return None
    chosen = rows["sha256"].unique().sort().head(n)
    picked = rows.filter(pl.col("sha256").is_in(chosen.implode())).sort("sha256", "aug_index")
    k = picked.filter(pl.col("sha256") == chosen[0]).height
    tensors = tensors_from_arrow(picked.to_arrow()["tensor"], picked["shape"][0].to_list())
    grid = make_grid(tensors, nrow=k, padding=2, pad_value=255)
    buffer = io.BytesIO()
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def markdown_image(png: bytes, caption: str) -> str:
    """Markdown with the PNG embedded, as the Dagster UI shows it in metadata."""
    encoded = base64.b64encode(png).decode()
    return f"**{caption}**\n\n![{caption}](data:image/png;base64,{encoded})"

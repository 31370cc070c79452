"""The augmentation recipe, run on the decoded PIL image: what a loader worker imports.

A spawned worker imports the module of the function it runs: this one imports
PIL and numpy only (no torch, polars, Dagster or torchvision), so a worker starts
in a fraction of the time and memory of a torch DataLoader worker.

Each view is a few PIL calls on the image (crop and resize in one resample, then
flip, rotation and photometric jitter on the small result), written straight into
one preallocated uint8 array per image. A view's random parameters come from a
numpy generator seeded by (sha256, aug_index, recipe_version) only, so the bytes
do not depend on the run, the order or the number of workers.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance

from lakehouse.curated.decode import DecodeError, decode_image
from lakehouse.failpoints import failpoint
from lakehouse.resources.reads import read_object
from lakehouse.vocabulary import INPUT_SIZE

SCALE = (0.7, 1.0)  # RandomResizedCrop's area fraction
RATIO = (3 / 4, 4 / 3)  # and its aspect ratios (torchvision's defaults)
DEGREES = 10.0  # rotation in [-10, 10] degrees, nearest neighbour, black corners
JITTER = 0.1  # brightness and contrast factors in [0.9, 1.1]


@dataclass(frozen=True)
class Recipe:
    """A named augmentation recipe; bump `version` whenever the bytes it makes change.

    Version 2 runs on the PIL image (version 1 ran torchvision v2 on uint8 tensors);
    `bench/peer_loader.py` states the same recipe as torchvision v2 transforms.
    """

    name: str = "photo-aug"
    version: str = "2"
    size: int = INPUT_SIZE


RECIPE = Recipe()


def row_seed(sha256: str, aug_index: int, recipe_version: str) -> int:
    """The seed of one augmented row: a function of content, index and recipe only."""
    digest = hashlib.sha256(f"{sha256}:{aug_index}:{recipe_version}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def crop_box(rng: np.random.Generator, width: int, height: int) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (left, top, right, bottom): ten tries at a random area and
    aspect ratio, else the centre crop at the nearest allowed ratio (torchvision's rule)."""
    area = width * height
    targets = area * rng.uniform(*SCALE, size=10)
    ratios = np.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1]), size=10))
    widths = np.rint(np.sqrt(targets * ratios)).astype(int)
    heights = np.rint(np.sqrt(targets / ratios)).astype(int)
    fits = np.flatnonzero((widths > 0) & (widths <= width) & (heights > 0) & (heights <= height))
    if fits.size:
        w, h = int(widths[fits[0]]), int(heights[fits[0]])
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        return left, top, left + w, top + h
    ratio = width / height
    if ratio < RATIO[0]:
        w, h = width, round(width / RATIO[0])
    elif ratio > RATIO[1]:
        w, h = round(height * RATIO[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def random_view(image: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """One random view: crop+resize in one resample, flip, rotate, brightness, contrast."""
    box = crop_box(rng, image.width, image.height)
    flip, angle = rng.random() < 0.5, rng.uniform(-DEGREES, DEGREES)
    brightness, contrast = rng.uniform(1 - JITTER, 1 + JITTER, size=2)
    view = image.resize((size, size), Image.Resampling.BILINEAR, box=box)
    if flip:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    view = view.rotate(angle, Image.Resampling.NEAREST, fillcolor=(0, 0, 0))
    view = ImageEnhance.Brightness(view).enhance(brightness)
    return ImageEnhance.Contrast(view).enhance(contrast)


def augment(image: Image.Image, sha256: str, k: int, recipe: Recipe = RECIPE) -> np.ndarray:
    """k views of an 8-bit RGB image as one k×C×H×W uint8 array: index 0 the plain resize,
    then k-1 views seeded by (sha256, aug_index, recipe version)."""
    size = recipe.size
    out = np.empty((k, size, size, 3), dtype=np.uint8)
    out[0] = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))
    for index in range(1, k):
        rng = np.random.default_rng(row_seed(sha256, index, recipe.version))
        out[index] = np.asarray(random_view(image, size, rng))
    return out.transpose(0, 3, 1, 2)  # a strided view: the batch copies it once


@dataclass(frozen=True)
class ViewBatch:
    """A batch of images: the views of those that decoded, and why the others did not."""

    sha256: list[str]
    pixels: np.ndarray  # images × k × C × H × W, uint8, contiguous
    failed: list[tuple[str, str]]


def augment_batch(
    store_uri: str, items: Sequence[tuple[str, str]], k: int, recipe: Recipe = RECIPE
) -> ViewBatch:
    """Read by key from the object store, decode and make the k views of each image,
    into one contiguous array (what a worker sends back in one piece)."""
    size = recipe.size
    pixels = np.empty((len(items), k, 3, size, size), dtype=np.uint8)
    shas, failed = [], []
    for sha256, key in items:
        failpoint("augment/image")
        try:
            decoded = decode_image(read_object(store_uri, key))
        except DecodeError as exc:
            failed.append((sha256, str(exc)))
            continue
        pixels[len(shas)] = augment(decoded.image, sha256, k, recipe)
        shas.append(sha256)
    return ViewBatch(shas, pixels[: len(shas)], failed)

"""The augmentation peer's Dataset, in a module of its own.

Spawned DataLoader workers import the module that defines their Dataset: this one
imports what a textbook torchvision loader does (torch, torchvision, PIL).
"""

from __future__ import annotations

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from bench.augment import K
from lakehouse.curated.recipe import DEGREES, JITTER, RATIO, RECIPE, SCALE, Recipe


def torchvision_recipe(recipe: Recipe = RECIPE) -> tuple[v2.Transform, v2.Transform]:
    """(plain, random): our recipe as torchvision v2 transforms, the textbook way."""
    size = (recipe.size, recipe.size)
    plain = v2.Resize(size, antialias=True)
    random = v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=SCALE, ratio=RATIO),
            v2.RandomHorizontalFlip(),
            v2.RandomRotation(DEGREES),
            v2.ColorJitter(brightness=JITTER, contrast=JITTER),
        ]
    )
    return plain, random


class PeerImages(Dataset):
    """The fastest idiomatic loader: PIL decode, the recipe's torchvision v2 transforms on
    the PIL image, `pil_to_tensor` at the end; the transforms are built once."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.plain, self.random = torchvision_recipe()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            rgb = image.convert("RGB")
        views = [self.plain(rgb)] + [self.random(rgb) for _ in range(K - 1)]
        return torch.stack([v2.functional.pil_to_tensor(view) for view in views])

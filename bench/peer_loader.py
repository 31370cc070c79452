"""The augmentation peer's Dataset, in a module of its own.

Spawned DataLoader workers import the module that defines their Dataset: this one
imports what a plain loader would (torch, torchvision, PIL) and the recipe, as
ours imports lakehouse.curated.augment, so both sides' workers start alike.
"""

from __future__ import annotations

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from lakehouse.curated.augment import RECIPE

K = 4


class PeerImages(Dataset):
    """The usual loader: PIL open, RGB tensor, the recipe's transforms built once."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.plain, self.random = RECIPE.plain(), RECIPE.random()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            pixels = v2.functional.pil_to_tensor(image.convert("RGB"))
        views = [self.plain(pixels)] + [self.random(pixels) for _ in range(K - 1)]
        return torch.stack(views)

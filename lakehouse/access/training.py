"""Training data for PyTorch: any version of training_set, read back exactly via time travel."""

from __future__ import annotations

import polars as pl
import torch
from torch.utils.data import Dataset

from lakehouse import settings
from lakehouse.features.logic import NUMERIC_FEATURES
from lakehouse.lake import LakeResource
from lakehouse.lake.tables import TRAINING_SET

SPLIT_NAMES = ("train", "val", "test")


class TrainingRows(Dataset):
    """(features, label) pairs: float32 features in NUMERIC_FEATURES order, likes_7d label."""

    feature_names = NUMERIC_FEATURES

    def __init__(self, rows: pl.DataFrame) -> None:
        self.photo_ids = rows["photo_id"].to_list()
        self.features = torch.from_numpy(
            rows.select(NUMERIC_FEATURES).cast(pl.Float32).to_numpy().copy()
        )
        self.labels = torch.from_numpy(rows["likes_7d"].cast(pl.Float32).to_numpy().copy())

    def __len__(self) -> int:
        return len(self.photo_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[index], self.labels[index]


def load(
    version: int | None = None,
    split: str | None = "train",
    as_polars: bool = False,
    lake: LakeResource | str | None = None,
    release: str | None = None,
) -> TrainingRows | pl.DataFrame:
    """The rows of training_set at `version` (latest by default), one split (None: all).

    `release` reads the version recorded in that named release instead.
    Delta time travel makes an old version return the same rows after the
    sources and the table itself moved on.
    """
    if split is not None and split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {SPLIT_NAMES} or None, not {split!r}")
    resource = (
        lake if isinstance(lake, LakeResource) else LakeResource(root=lake or settings.lake_uri())
    )
    if release is not None:
        if version is not None:
            raise ValueError("pass either version or release, not both")
        version = release_version(resource, release)
    rows = resource.read(TRAINING_SET, version=version)
    if rows is None:
        raise LookupError(f"no training_set under {resource.root}: materialize it first")
    if split is not None:
        rows = rows.filter(pl.col("split") == split)
    rows = rows.sort("photo_id")
    return rows if as_polars else TrainingRows(rows)


def release_version(lake: LakeResource, release: str) -> int:
    """The training_set version recorded in a named release."""
    from lakehouse.access.releases import ReleaseError, find_release

    versions = find_release(lake, release).versions
    if "training_set" not in versions:
        raise ReleaseError(f"release {release!r} has no training_set (made before it existed)")
    return versions["training_set"]

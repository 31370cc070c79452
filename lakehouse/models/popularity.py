"""The popularity model: closed-form ridge regression on log1p(likes). Pure numpy.

Closed form keeps it exact and deterministic (no seed, no epochs), and small
enough to train nightly on a laptop. The basis encodes what popularity
plausibly depends on: time-of-day buckets, log activity counts, account age,
and the classifier's content/style probabilities.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from lakehouse.features.logic import CLASSIFIER_COLUMNS

RIDGE_PENALTY = 1.0
HOUR_BUCKETS = 4  # 6-hour blocks of the UTC day


def basis(frame: pl.DataFrame, with_classifier: bool = True) -> pl.DataFrame:
    """The model's inputs, derived from training_set columns."""
    bucket = pl.col("hour_of_day") // (24 // HOUR_BUCKETS)
    return frame.select(
        *((bucket == b).cast(pl.Float64).alias(f"hours_{b}") for b in range(HOUR_BUCKETS)),
        pl.col("author_logins_24h").cast(pl.Float64).log1p().alias("log_logins_24h"),
        pl.col("author_likes_7d").cast(pl.Float64).log1p().alias("log_likes_7d"),
        pl.col("account_age_days").clip(0.0).log1p().alias("log_account_age"),
        pl.col("title_length").cast(pl.Float64),
        *(pl.col(c).cast(pl.Float64) for c in (CLASSIFIER_COLUMNS if with_classifier else [])),
    )


@dataclass(frozen=True)
class RidgeModel:
    columns: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    with_classifier: bool

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Expected likes (back from the log1p scale, never negative)."""
        x = (basis(frame, self.with_classifier).to_numpy() - self.mean) / self.scale
        return np.clip(np.expm1(x @ np.asarray(self.coef) + self.intercept), 0.0, None)

    def to_bytes(self) -> bytes:
        """Canonical JSON: the same model always has the same bytes, hence the same object key."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @staticmethod
    def from_bytes(data: bytes) -> RidgeModel:
        return RidgeModel(**json.loads(data))


def fit(frame: pl.DataFrame, with_classifier: bool = True) -> RidgeModel:
    """Ridge on standardized inputs against log1p(likes_7d)."""
    inputs = basis(frame, with_classifier)
    x = inputs.to_numpy()
    mean = x.mean(axis=0)
    scale = np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    z = (x - mean) / scale
    y = np.log1p(frame["likes_7d"].cast(pl.Float64).to_numpy())
    intercept = float(y.mean())
    coef = np.linalg.solve(z.T @ z + RIDGE_PENALTY * np.eye(z.shape[1]), z.T @ (y - intercept))
    return RidgeModel(
        inputs.columns, mean.tolist(), scale.tolist(), coef.tolist(), intercept, with_classifier
    )


def mean_absolute_error(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - actual)))


def spearman(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Rank correlation (average ranks for ties): does the model order photos right?"""
    ranks = pl.DataFrame({"p": predicted, "a": actual.astype(np.float64)}).select(
        pl.all().rank("average")
    )
    return float(np.corrcoef(ranks["p"].to_numpy(), ranks["a"].to_numpy())[0, 1])


def has_classifier_outputs(*frames: pl.DataFrame) -> bool:
    """Whether every row has the classifier's probabilities (not so before its first model)."""
    return all(
        frame.select(CLASSIFIER_COLUMNS).null_count().sum_horizontal().item() == 0
        for frame in frames
    )


def evaluate(train: pl.DataFrame, val: pl.DataFrame) -> tuple[RidgeModel, dict[str, float]]:
    """The model, and its validation metrics next to the two baselines it must beat.

    Without the classifier's outputs (day 0) the model trains without them, and
    `no_classifier_mae` equals `val_mae`; `RidgeModel.columns` says what it used."""
    model = fit(train, has_classifier_outputs(train, val))
    actual = val["likes_7d"].cast(pl.Float64).to_numpy()
    predicted = model.predict(val)
    train_mean = float(train["likes_7d"].mean())  # type: ignore[arg-type]
    return model, {
        "val_mae": mean_absolute_error(predicted, actual),
        "baseline_mean_mae": mean_absolute_error(np.full_like(actual, train_mean), actual),
        "no_classifier_mae": mean_absolute_error(fit(train, False).predict(val), actual),
        "val_spearman": spearman(predicted, actual),
    }

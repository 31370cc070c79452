"""The model registry: one lake table per kind of model, one row per trained model.

A row names the model's weights (content-addressed under objects/), what it was
trained on and how well it scored; exactly one row is `current`, the model that
downstream assets use. An asset first looks for a model trained on the same
inputs (each kind says what "the same" means) and reuses it instead of training.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from lakehouse.lake.resource import LakeResource
from lakehouse.lake.tables import POPULARITY_MODEL, STYLE_CONTENT_CLASSIFIER, Table

POPULARITY_METRICS = ("val_mae", "baseline_mean_mae", "no_classifier_mae", "val_spearman")


@dataclass(frozen=True)
class ModelRegistry:
    """The models of one kind: a lake table, its rows' schema and its natural key."""

    table: Table
    schema: dict[str, pl.DataType]

    def models(self, lake: LakeResource) -> pl.DataFrame:
        """Every registered model (none yet: an empty frame); a table from before the
        `current` flag reads as no model current."""
        rows = lake.read_or_empty(self.table, self.schema)
        if "current" not in rows.columns:
            rows = rows.with_columns(current=pl.lit(False))
        return rows.with_columns(pl.col("current").fill_null(False))

    def find(self, models: pl.DataFrame, same_inputs: pl.Expr) -> dict[str, object] | None:
        """A registered model trained on the same inputs (`same_inputs` says which), if any."""
        known = models.filter(same_inputs)
        return known.row(0, named=True) if known.height else None

    def make_current(
        self,
        lake: LakeResource,
        models: pl.DataFrame,
        row: dict[str, object],
        *,
        commit_info: dict[str, str],
    ) -> bool:
        """Register `row` (new or known) as the current model and the previous one as not,
        in one commit; no commit when just this row is registered and current already."""
        wanted = {**{column: row.get(column) for column in self.schema}, "current": True}
        this = pl.all_horizontal(pl.col(column) == row[column] for column in self.table.key)
        registered = models.filter(this & pl.col("current")).select(list(self.schema))
        if registered.height and registered.row(0, named=True) == wanted:
            return False
        updates = pl.concat(
            [
                models.filter(pl.col("current") & ~this)
                .select(list(self.schema))
                .with_columns(current=pl.lit(False)),
                pl.DataFrame([wanted], schema=self.schema),
            ]
        )
        return lake.upsert(self.table, updates, commit_info=commit_info)

    def current(self, lake: LakeResource) -> dict[str, object]:
        """The current model's row."""
        current = self.models(lake).filter(pl.col("current"))
        if current.is_empty():
            raise RuntimeError(f"no trained {self.table} in the lake: materialize it first")
        return current.row(0, named=True)


CLASSIFIERS = ModelRegistry(
    STYLE_CONTENT_CLASSIFIER,
    {
        "model_version": pl.String(),
        "weights_key": pl.String(),
        "weights_sha256": pl.String(),
        "inputs_digest": pl.String(),
        "content_accuracy": pl.Float64(),
        "style_accuracy": pl.Float64(),
        "train_photos": pl.Int64(),
        "held_out_photos": pl.Int64(),
        "recipe_version": pl.String(),
        "trained_at": pl.Datetime("us", "UTC"),
        "current": pl.Boolean(),
    },
)
POPULARITY_MODELS = ModelRegistry(
    POPULARITY_MODEL,
    {
        "model_version": pl.String(),
        "weights_key": pl.String(),
        "code_version": pl.String(),
        "training_set_version": pl.Int64(),
        "train_rows": pl.Int64(),
        "val_rows": pl.Int64(),
        **{metric: pl.Float64() for metric in POPULARITY_METRICS},
        "current": pl.Boolean(),
    },
)

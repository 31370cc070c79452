"""The nightly popularity model, trained on one pinned version of training_set."""

import dagster as dg
import polars as pl

from lakehouse.failpoints import failpoint
from lakehouse.graph import charts
from lakehouse.graph.defaults import layer_defaults, nightly_freshness
from lakehouse.graph.pictures import earlier_pictures, picture, previous_metadata
from lakehouse.lake import LakeResource, commit_info_for, table_metadata
from lakehouse.lake.metadata import object_link
from lakehouse.lake.tables import POPULARITY_MODEL, TRAINING_SET
from lakehouse.models.popularity import RidgeModel, evaluate
from lakehouse.models.registry import POPULARITY_METRICS, POPULARITY_MODELS
from lakehouse.resources.errors import PermanentError

POPULARITY_CODE_VERSION = "1"


def training_rows_at(lake: LakeResource, version: int) -> pl.DataFrame:
    """Every row of one training_set version (Delta time travel), in photo_id order."""
    return lake.read(TRAINING_SET, version=version).sort("photo_id")  # type: ignore[union-attr]


def train_model(lake: LakeResource, rows: pl.DataFrame, version: int) -> dict[str, object]:
    """Fit on the train split, score on val, store the weights content-addressed."""
    train = rows.filter(pl.col("split") == "train")
    val = rows.filter(pl.col("split") == "val")
    model, metrics = evaluate(train, val)
    failpoint("popularity/trained")
    key = lake.put_object(model.to_bytes())
    return {
        "model_version": key.rsplit("/", 1)[1][:16],
        "weights_key": key,
        "code_version": POPULARITY_CODE_VERSION,
        "training_set_version": version,
        "train_rows": train.height,
        "val_rows": val.height,
        **metrics,
    }


def popularity_pictures(
    context: dg.AssetExecutionContext, lake: LakeResource, row: dict, rows: pl.DataFrame | None
) -> dict[str, object]:
    """Predicted vs actual likes on the val split (drawn from the stored weights, so a reused
    model draws the same picture, stored once), and the metrics next to the baselines.
    `rows`: the training_set version's rows if already read (else read when drawing)."""
    caption = "predicted vs actual likes in 7 days, one dot per val photo; gray: perfect"
    earlier = previous_metadata(context)
    drawn = {
        name: getattr(earlier.get(name), "value", None)
        for name in ("weights_key", "training_set_version")
    }
    # the same weights on the same training_set version draw the same dots: the previous
    # materialization's picture is shown again, not drawn (a no-change run draws nothing)
    same = drawn == {name: row[name] for name in drawn}
    pictures = earlier_pictures(context, {"predicted_vs_actual": caption}, earlier) if same else {}
    if not pictures:
        model = RidgeModel.from_bytes(lake.get_object(str(row["weights_key"])))
        if rows is None:
            rows = training_rows_at(lake, int(row["training_set_version"]))
        val = rows.filter(pl.col("split") == "val")
        png = charts.predicted_vs_actual(
            model.predict(val).tolist(),
            val["likes_7d"].cast(pl.Float64).to_list(),
            f"val split of training_set v{row['training_set_version']}: likes in 7 days",
        )
        pictures = picture(context, lake, "predicted_vs_actual", png, caption)
    compared = [
        ("ridge regression", row["val_mae"], row["val_spearman"]),
        ("baseline: train mean", row["baseline_mean_mae"], None),
        ("ridge without classifier features", row["no_classifier_mae"], None),
    ]
    return {
        **pictures,
        "metrics_vs_baselines": dg.MetadataValue.table(
            records=[
                dg.TableRecord(
                    {
                        "model": name,
                        "val_mae": round(float(mae), 4),
                        "val_spearman": None if rho is None else round(float(rho), 4),
                    }
                )
                for name, mae, rho in compared
            ],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn("model", "string"),
                    dg.TableColumn("val_mae", "float", description="mean absolute error"),
                    dg.TableColumn("val_spearman", "float", description="rank correlation"),
                ]
            ),
        ),
    }


@dg.asset(
    deps=["training_set"],
    code_version=POPULARITY_CODE_VERSION,
    description="Ridge regression on log1p(likes in 7 d) over photo_features, trained on the "
    "train split of one training_set version and scored on val against two baselines "
    "(train mean; the same model without classifier features). Weights under objects/.",
    freshness_policy=nightly_freshness(),
    **layer_defaults("models", "team:ml", kinds={"numpy", "delta"}),
)
def popularity_model(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    version = lake.version(TRAINING_SET)
    if version is None:
        raise PermanentError("materialize training_set first")
    models = POPULARITY_MODELS.models(lake)
    known = POPULARITY_MODELS.find(
        models,
        (pl.col("training_set_version") == version)
        & (pl.col("code_version") == POPULARITY_CODE_VERSION),
    )
    rows: pl.DataFrame | None = None
    if known is not None:
        # trained on this very version, so it has train and val rows: none is read again
        row, trained = known, 0
        context.log.info(f"training_set v{version} unchanged: reusing {row['model_version']}")
    else:
        rows = training_rows_at(lake, version)
        splits = rows["split"]
        if not ((splits == "train").any() and (splits == "val").any()):
            reason = (
                f"training_set v{version} has no train or no val rows (too few complete labels)"
            )
            context.log.warning(f"popularity_model not trained: {reason}")
            return dg.MaterializeResult(
                data_version=dg.DataVersion(f"untrained-training-set-v{version}"),
                metadata={
                    **table_metadata(lake, POPULARITY_MODEL, models.height, 0),
                    "trained": False,
                    "reason": reason,
                },
            )
        row, trained = train_model(lake, rows, version), 1
    POPULARITY_MODELS.make_current(lake, models, row, commit_info=commit_info_for(context))
    model = RidgeModel.from_bytes(lake.get_object(str(row["weights_key"])))
    context.log.info(
        f"popularity_model {row['model_version']}: "
        + ", ".join(f"{metric} {float(row[metric]):.3f}" for metric in POPULARITY_METRICS)
        + ("" if model.with_classifier else "; trained without the classifier's features")
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(str(row["weights_key"]).rsplit("/", 1)[1]),
        metadata={
            **table_metadata(lake, POPULARITY_MODEL, models.height + trained, trained),
            "weights": object_link(lake, str(row["weights_key"])),
            "weights_key": str(row["weights_key"]),
            "training_set_version": version,
            **{metric: round(float(row[metric]), 4) for metric in POPULARITY_METRICS},
            "with_classifier": model.with_classifier,
            "features": ", ".join(model.columns),
            **popularity_pictures(context, lake, row, rows),
        },
    )

"""How a training_set version is distributed (rows and labels per split) and how that
moved from the version before it. Pure polars."""

from __future__ import annotations

import polars as pl

SPLITS = ("train", "val", "test")
# likes in 7 days, bucketed for the picture
LIKE_BUCKETS = ((0, 0, "0"), (1, 2, "1-2"), (3, 5, "3-5"), (6, 10, "6-10"), (11, None, "11+"))


def like_bucket() -> pl.Expr:
    """The LIKE_BUCKETS label of `likes_7d`."""
    expr = pl.lit(LIKE_BUCKETS[-1][2])
    for low, high, name in reversed(LIKE_BUCKETS[:-1]):
        expr = pl.when(pl.col("likes_7d").is_between(low, high)).then(pl.lit(name)).otherwise(expr)
    return expr


def label_histogram(rows: pl.DataFrame) -> dict[str, dict[str, float]]:
    """Per split, the share of its rows in each likes bucket."""
    found: dict[str, dict[str, float]] = {}
    for split in SPLITS:
        part = rows.filter(pl.col("split") == split)
        if part.is_empty():
            continue
        counts = part.group_by(like_bucket().alias("bucket")).len()
        found[split] = {b: n / part.height for b, n in counts.iter_rows()}
    return found


def split_shift(rows: pl.DataFrame, previous: pl.DataFrame | None) -> list[dict[str, object]]:
    """Per split: rows and mean likes now and in the previous version, and the change."""

    def summary(frame: pl.DataFrame | None, split: str) -> tuple[int, float | None]:
        if frame is None:
            return 0, None
        part = frame.filter(pl.col("split") == split)["likes_7d"]
        return part.len(), None if part.is_empty() else round(float(part.mean()), 3)  # type: ignore[arg-type]

    records = []
    for split in SPLITS:
        (n, mean), (n_before, mean_before) = summary(rows, split), summary(previous, split)
        records.append(
            {
                "split": split,
                "rows": n,
                "rows_before": n_before,
                "rows_change": n - n_before,
                "mean_likes": mean,
                "mean_likes_before": mean_before,
                "mean_likes_change": None
                if mean is None or mean_before is None
                else round(mean - mean_before, 3),
            }
        )
    return records

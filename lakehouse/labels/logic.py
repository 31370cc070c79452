"""Pure logic of the labeling loop: which photos to label next, and the weak-label tables.

No Dagster, no lake: frames in, frames out.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping

import numpy as np
import polars as pl

from lakehouse.labels.label_model import (
    ABSTAIN,
    FunctionStats,
    GenerativeModel,
    majority_vote,
)
from lakehouse.labels.labeling_functions import LabelingFunction
from lakehouse.lake.digests import digest_strings, row_digests, with_row_digest
from lakehouse.vocabulary import CONTENT_CLASSES

STRATEGIES = ("margin", "entropy")
HEADS = ("content", "style")
PROB_COLUMNS = [f"p_{name}" for name in CONTENT_CLASSES]
FIRST_LABELS = "diversity"  # the day-0 queue's strategy: no model to be unsure yet
QUEUE_ORDER = ("uncertainty", "photo_id")  # descending uncertainty, then ascending photo_id


def head_uncertainty(probs: np.ndarray, strategy: str) -> np.ndarray:
    """How unsure one head is, in [0, 1]: 1 - (top1 - top2), or entropy / log(classes)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
    if strategy == "margin":
        top = np.sort(probs, axis=1)
        return 1.0 - (top[:, -1] - top[:, -2])
    clipped = np.clip(probs, 1e-12, 1.0)
    return -(clipped * np.log(clipped)).sum(axis=1) / np.log(probs.shape[1])


def first_labels_queue(candidates: pl.DataFrame) -> pl.DataFrame:
    """The queue before any classifier exists (day 0), shaped like `queue_rows`: spread
    over places and newest first. The newest photo of each place ranks 1, the second
    newest 2, and so on; `uncertainty` is 1 / rank, so QUEUE_ORDER takes one photo of
    every place before a second of any. The classifier's columns are null."""
    rank = pl.col("posted_at").rank("ordinal", descending=True).over("location_name")
    rows = (
        candidates.sort("photo_id")
        .select(
            "photo_id",
            "sha256",
            "object_key",
            "title",
            "model_version",
            *(f"{head}_{part}" for head in HEADS for part in ("label", "score")),
            **{f"{head}_uncertainty": pl.lit(None, pl.Float64) for head in HEADS},
            uncertainty=1.0 / rank.cast(pl.Float64),
            strategy=pl.lit(FIRST_LABELS),
        )
        .with_columns(pl.col(pl.Float32).cast(pl.Float64))
        .sort(*QUEUE_ORDER, descending=[True, False])
    )
    return with_row_digest(rows)


def queue_rows(candidates: pl.DataFrame, strategy: str) -> pl.DataFrame:
    """Unlabelled photos with classifier outputs and how uncertain the classifier is.

    A photo is as uncertain as its less certain head: labelling it helps that
    head most. The queue's order is QUEUE_ORDER (most uncertain first, ties to
    the lower photo_id); no rank is stored, so a photo leaving the queue
    rewrites no other row.
    """
    per_head = {
        head: head_uncertainty(_probs(candidates, f"{head}_probs"), strategy) for head in HEADS
    }
    rows = (
        candidates.select(
            "photo_id",
            "sha256",
            "object_key",
            "title",
            "model_version",
            *(f"{head}_{part}" for head in HEADS for part in ("label", "score")),
        )
        .with_columns(
            **{f"{head}_uncertainty": pl.Series(values) for head, values in per_head.items()},
            uncertainty=pl.Series(np.maximum(*per_head.values())),
            strategy=pl.lit(strategy),
        )
        .with_columns(pl.col(pl.Float32).cast(pl.Float64))
        .sort(*QUEUE_ORDER, descending=[True, False])
    )
    return with_row_digest(rows)


def _probs(frame: pl.DataFrame, column: str) -> np.ndarray:
    values = frame[column].to_list()
    return np.array(values, dtype=np.float64) if values else np.zeros((0, 2))


def with_place_counts(photos: pl.DataFrame) -> pl.DataFrame:
    """Add `place_counts`: per content class, how many *other* gold-labelled photos share the
    photo's location_name (its own label is taken out; no place, no neighbours).

    Counts, not the labels themselves: a place holds thousands of labelled photos at
    scale, and a list of them on every photo grows as photos x labels.
    """
    own = {
        label: pl.col("gold_label").eq(label).fill_null(False).cast(pl.Int64)
        for label in CONTENT_CLASSES
    }
    per_place = (
        photos.filter(pl.col("gold_label").is_not_null() & pl.col("location_name").is_not_null())
        .group_by("location_name")
        .agg(**{f"_{label}": own[label].sum() for label in CONTENT_CLASSES})
    )
    return (
        photos.join(per_place, on="location_name", how="left")
        .with_columns(
            place_counts=pl.struct(
                **{
                    label: pl.col(f"_{label}").fill_null(0)
                    - pl.when(pl.col("location_name").is_not_null()).then(own[label]).otherwise(0)
                    for label in CONTENT_CLASSES
                }
            )
        )
        .drop(f"_{label}" for label in CONTENT_CLASSES)
    )


INPUTS_COLUMN = "inputs_sha256"  # weak_labels: digest of what the functions saw of the photo


def functions_digest(functions: Mapping[str, LabelingFunction]) -> str | None:
    """Digest of the source of every module that defines one of `functions` (so the
    constants beside a function, as its keywords, count too) and their names; None when
    a source cannot be read (a function typed into a notebook): no vote is then reused.
    What a function imports from other modules is not covered: bump weak_labels' code
    version when that changes."""
    parts = []
    for name, function in sorted(functions.items()):
        module = sys.modules.get(function.__module__)
        try:
            source = inspect.getsource(module) if module is not None else None
        except (OSError, TypeError):
            source = None
        if source is None:
            return None
        parts += [name, function.__module__, source]
    return digest_strings(parts)


def input_digests(photos: pl.DataFrame, functions: str) -> pl.Series:
    """Per photo, the digest of its whole row (what a labeling function is given) and of
    the functions: a vote stands as long as both do."""
    return row_digests(photos.with_columns(_functions=pl.lit(functions))).rename(INPUTS_COLUMN)


def label_matrix_reusing(
    photos: pl.DataFrame,
    functions: Mapping[str, LabelingFunction],
    inputs: pl.Series,
    earlier: pl.DataFrame | None,
) -> tuple[np.ndarray, int]:
    """`label_matrix`, with the functions applied only to the photos whose `inputs` digest
    is not the one `earlier` (photo_id, INPUTS_COLUMN and a vote column per function,
    class names) holds for them: the others' votes are taken from there. Returns the
    matrix and how many photos the functions were applied to."""
    needed = {"photo_id", INPUTS_COLUMN, *functions}
    if not functions or earlier is None or not needed <= set(earlier.columns):
        return label_matrix(photos, functions), photos.height
    index = {label: i for i, label in enumerate(CONTENT_CLASSES)}
    names = list(functions)
    stored = earlier.select("photo_id", INPUTS_COLUMN, *names).with_columns(
        # a vote of a class the vocabulary no longer has is not reused
        _known=pl.all_horizontal(
            pl.col(name).is_null() | pl.col(name).is_in(CONTENT_CLASSES) for name in names
        )
    )
    matched = (
        photos.select("photo_id")
        .with_columns(inputs)
        .with_row_index("row")
        .join(stored, on=["photo_id", INPUTS_COLUMN], how="left")
        .sort("row")
    )
    known = matched["_known"].fill_null(False).to_numpy()
    matrix = (
        matched.select(
            pl.col(name).replace_strict(index, default=ABSTAIN, return_dtype=pl.Int64)
            for name in names
        )
        .fill_null(ABSTAIN)
        .to_numpy()
        .astype(np.int64)
        .reshape(photos.height, len(names))
    )
    todo = np.flatnonzero(~known)
    if len(todo):
        matrix[todo] = label_matrix(photos[todo], functions)
    return matrix, len(todo)


def label_matrix(photos: pl.DataFrame, functions: Mapping[str, LabelingFunction]) -> np.ndarray:
    """photo × function matrix of class indices, ABSTAIN where a function said nothing."""
    index = {label: i for i, label in enumerate(CONTENT_CLASSES)}
    matrix = np.full((photos.height, len(functions)), ABSTAIN, dtype=np.int64)
    for i, photo in enumerate(photos.iter_rows(named=True)):
        for j, function in enumerate(functions.values()):
            label = function(photo)
            if label is not None:
                if label not in index:
                    raise ValueError(f"{list(functions)[j]} returned unknown class {label!r}")
                matrix[i, j] = index[label]
    return matrix


def gold_indices(photos: pl.DataFrame) -> np.ndarray:
    index = {label: i for i, label in enumerate(CONTENT_CLASSES)}
    return np.array([index.get(label, ABSTAIN) for label in photos["gold_label"].to_list()])


def weak_label_rows(
    photos: pl.DataFrame,
    names: list[str],
    matrix: np.ndarray,
    model: GenerativeModel,
    label_model: str,
    inputs: pl.Series | None = None,
) -> pl.DataFrame:
    """One row per photo: each function's vote (null = abstain), the gold label, majority
    vote, and the label of `label_model` (`generative` or `majority`) with its class
    probabilities; `label` is null and `confidence` 0 where nothing decides it. With
    `inputs` (`input_digests`), the digest its votes were computed from."""
    majority, majority_probs = majority_vote(matrix, len(CONTENT_CLASSES))
    if label_model == "generative":
        probs = model.posteriors
        uncovered = (matrix == ABSTAIN).all(axis=1)
        labels = np.where(uncovered, ABSTAIN, probs.argmax(axis=1))
    else:
        probs, labels = majority_probs, majority
    return with_row_digest(
        photos.select("photo_id", "gold_label").with_columns(
            *(
                pl.Series(name, _class_names(matrix[:, j]), dtype=pl.String)
                for j, name in enumerate(names)
            ),
            majority_label=pl.Series(_class_names(majority), dtype=pl.String),
            label=pl.Series(_class_names(labels), dtype=pl.String),
            confidence=pl.Series(
                np.where(labels == ABSTAIN, 0.0, probs.max(axis=1)), dtype=pl.Float64
            ),
            **{
                column: pl.Series(probs[:, k], dtype=pl.Float64)
                for k, column in enumerate(PROB_COLUMNS)
            },
            label_model=pl.lit(label_model),
            **({} if inputs is None else {INPUTS_COLUMN: inputs}),
        )
    )


def stats_rows(
    names: list[str], stats: list[FunctionStats], model: GenerativeModel
) -> pl.DataFrame:
    """One row per labeling function: coverage, overlap, conflict, accuracy against gold
    and the accuracy the generative model estimated without gold."""
    estimated = model.accuracies()
    return with_row_digest(
        pl.DataFrame(
            {
                "function": names,
                "coverage": [s.coverage for s in stats],
                "overlap": [s.overlap for s in stats],
                "conflict": [s.conflict for s in stats],
                "gold_covered": [s.gold_covered for s in stats],
                "accuracy": [s.accuracy for s in stats],
                "estimated_accuracy": [float(a) for a in estimated],
            },
            schema={
                "function": pl.String,
                "coverage": pl.Float64,
                "overlap": pl.Float64,
                "conflict": pl.Float64,
                "gold_covered": pl.Int64,
                "accuracy": pl.Float64,
                "estimated_accuracy": pl.Float64,
            },
        )
    )


def _class_names(indices: np.ndarray) -> list[str | None]:
    return [None if i == ABSTAIN else CONTENT_CLASSES[i] for i in indices.tolist()]

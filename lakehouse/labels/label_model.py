"""Label models over a label matrix: majority vote and a Dawid–Skene generative model.

A label matrix has one row per item and one column per labeling function;
entries are class indices, or ABSTAIN where the function said nothing. Plain
numpy: the models are small EM loops that need no unmaintained library.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ABSTAIN = -1


@dataclass(frozen=True)
class FunctionStats:
    """How one labeling function behaves on a matrix (fractions of all rows, as in Snorkel)."""

    coverage: float  # labels the row
    overlap: float  # labels it and another function labels it too
    conflict: float  # labels it and another function gives a different label
    gold_covered: int  # rows with a gold label that it labels
    accuracy: float | None  # correct among those; None without gold


def function_stats(matrix: np.ndarray, gold: np.ndarray | None = None) -> list[FunctionStats]:
    """Coverage, overlap, conflict and (where `gold` is not ABSTAIN) accuracy per column."""
    rows = max(len(matrix), 1)
    voted = matrix != ABSTAIN
    stats = []
    for j in range(matrix.shape[1]):
        mine = voted[:, j]
        others = np.delete(matrix, j, axis=1)
        others_voted = others != ABSTAIN
        overlap = mine & others_voted.any(axis=1)
        disagree = others_voted & (others != matrix[:, [j]])
        conflict = mine & disagree.any(axis=1)
        judged = mine & (gold != ABSTAIN) if gold is not None else np.zeros_like(mine)
        covered = int(judged.sum())
        stats.append(
            FunctionStats(
                coverage=float(mine.sum() / rows),
                overlap=float(overlap.sum() / rows),
                conflict=float(conflict.sum() / rows),
                gold_covered=covered,
                accuracy=float((matrix[judged, j] == gold[judged]).mean()) if covered else None,
            )
        )
    return stats


def vote_counts(matrix: np.ndarray, classes: int) -> np.ndarray:
    """Votes per row and class (abstentions are not votes)."""
    counts = np.zeros((len(matrix), classes))
    for j in range(matrix.shape[1]):
        voted = matrix[:, j] != ABSTAIN
        np.add.at(counts, (np.flatnonzero(voted), matrix[voted, j]), 1)
    return counts


def majority_vote(matrix: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels (ABSTAIN on a tie or no vote) and probabilities spread evenly over the tied best."""
    counts = vote_counts(matrix, classes)
    best = counts == counts.max(axis=1, keepdims=True)
    probs = best / best.sum(axis=1, keepdims=True)
    single = best.sum(axis=1) == 1
    labels = np.where(single & (counts.sum(axis=1) > 0), counts.argmax(axis=1), ABSTAIN)
    return labels, probs


@dataclass(frozen=True)
class GenerativeModel:
    """A fitted Dawid–Skene model: class prior and one confusion matrix per function."""

    prior: np.ndarray  # (classes,)
    confusion: np.ndarray  # (functions, true class, emitted class)
    posteriors: np.ndarray  # (rows, classes): the probabilistic labels
    iterations: int

    def accuracies(self) -> np.ndarray:
        """Each function's estimated accuracy when it votes: sum_k prior_k * P(emit k | true k)."""
        return np.einsum("k,jkk->j", self.prior, self.confusion)


def fit_generative(
    matrix: np.ndarray,
    classes: int,
    *,
    max_iterations: int = 200,
    tolerance: float = 1e-6,
    diagonal_prior: float = 2.0,
    off_diagonal_prior: float = 1.0,
) -> GenerativeModel:
    """EM for class-conditional confusion matrices (Dawid & Skene, 1979), started from
    majority vote.

    The Dirichlet pseudo-counts say a function is a little better than chance
    before seeing data, which keeps the classes from swapping names and keeps
    rare votes from being certain. Rows where every function abstains get the
    class prior.
    """
    functions = matrix.shape[1]
    _, posteriors = majority_vote(matrix, classes)
    pseudo = np.full((classes, classes), off_diagonal_prior)
    np.fill_diagonal(pseudo, diagonal_prior)
    emitted = [_one_hot(matrix[:, j], classes) for j in range(functions)]
    if max_iterations < 1:
        raise ValueError("max_iterations must be at least 1")
    for iteration in range(1, max_iterations + 1):
        prior = (posteriors.sum(axis=0) + 1.0) / (len(matrix) + classes)
        confusion = np.stack([posteriors.T @ emitted[j] + pseudo for j in range(functions)])
        confusion /= confusion.sum(axis=2, keepdims=True)
        log_post = np.log(prior) + sum(
            emitted[j] @ np.log(confusion[j]).T for j in range(functions)
        )
        log_post -= log_post.max(axis=1, keepdims=True)
        updated = np.exp(log_post)
        updated /= updated.sum(axis=1, keepdims=True)
        change = float(np.abs(updated - posteriors).max()) if len(matrix) else 0.0
        posteriors = updated
        if change < tolerance or iteration == max_iterations:
            return GenerativeModel(prior, confusion, posteriors, iteration)
    raise AssertionError("unreachable")


def _one_hot(column: np.ndarray, classes: int) -> np.ndarray:
    """(rows, classes) indicator of the emitted class; all zeros where the function abstained."""
    out = np.zeros((len(column), classes))
    voted = column != ABSTAIN
    out[np.flatnonzero(voted), column[voted]] = 1.0
    return out

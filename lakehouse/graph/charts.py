"""Small charts as PNG bytes (matplotlib, Agg): loss curves, confusion matrices, scatter
plots, bar charts. Pure: no Dagster; the same data always gives the same bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SIZE = (5.0, 3.6)
DPI = 80


def _png(figure: plt.Figure) -> bytes:
    """The figure as PNG, without the software tag that would tie the bytes to a version."""
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def loss_curve(losses: Sequence[float], title: str = "training loss per epoch") -> bytes:
    """Loss (y) against epoch (x, from 1)."""
    figure, axes = plt.subplots(figsize=SIZE)
    epochs = np.arange(1, len(losses) + 1)
    axes.plot(epochs, list(losses), marker="o")
    axes.set(xlabel="epoch", ylabel="loss", title=title)
    axes.grid(alpha=0.3)
    return _png(figure)


def confusion_matrix(
    actual: Sequence[int], predicted: Sequence[int], classes: Sequence[str], title: str
) -> bytes:
    """Counts of (actual row, predicted column), each cell labelled."""
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for truth, guess in zip(actual, predicted, strict=True):
        counts[truth, guess] += 1
    figure, axes = plt.subplots(figsize=SIZE)
    axes.imshow(counts, cmap="Blues")
    for row, col in np.ndindex(counts.shape):
        axes.text(col, row, str(counts[row, col]), ha="center", va="center")
    axes.set_xticks(range(len(classes)), classes, rotation=30)
    axes.set_yticks(range(len(classes)), classes)
    axes.set(xlabel="predicted", ylabel="actual", title=title)
    return _png(figure)


def predicted_vs_actual(predicted: Sequence[float], actual: Sequence[float], title: str) -> bytes:
    """One dot per photo, with the diagonal where prediction equals truth."""
    figure, axes = plt.subplots(figsize=SIZE)
    axes.scatter(actual, predicted, s=12, alpha=0.7)
    top = max([1.0, *actual, *predicted])
    axes.plot([0, top], [0, top], color="gray", linewidth=1)
    axes.set(xlabel="actual", ylabel="predicted", title=title)
    axes.grid(alpha=0.3)
    return _png(figure)


def grouped_bars(groups: dict[str, dict[str, float]], title: str, ylabel: str) -> bytes:
    """One group of bars per outer key (e.g. a split), one bar per inner key (e.g. a label)."""
    names = sorted({name for bars in groups.values() for name in bars})
    figure, axes = plt.subplots(figsize=SIZE)
    width = 0.8 / max(1, len(groups))
    for i, (group, bars) in enumerate(groups.items()):
        axes.bar(
            np.arange(len(names)) + i * width,
            [bars.get(name, 0) for name in names],
            width,
            label=group,
        )
    axes.set_xticks(np.arange(len(names)) + width * (len(groups) - 1) / 2, names, rotation=30)
    axes.set(ylabel=ylabel, title=title)
    axes.legend(fontsize="small")
    return _png(figure)

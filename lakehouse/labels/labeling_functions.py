"""Labeling functions for the content of a photo: the one registry of weak supervision.

Each function is plain Python: it gets one photo as a mapping (title,
location_name, the classifier's content_label and content_score, and
`place_counts`, how many other photos taken at the same place carry each gold
content label) and returns a content class or None to abstain. Register a new one with
`@labeling_function`; `weak_labels` picks it up, reports its coverage, overlap,
conflicts and accuracy, and the label model learns how far to trust it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from lakehouse.vocabulary import CONTENT_CLASSES

Photo = Mapping[str, object]
LabelingFunction = Callable[[Photo], str | None]

LABELING_FUNCTIONS: dict[str, LabelingFunction] = {}

# What people call each shape in a title; more words only raise coverage.
TITLE_KEYWORDS = {
    "circle": ("circle", "circles", "ring", "rings", "dot", "dots", "disc", "round"),
    "square": ("square", "squares", "box", "boxes", "block", "blocks", "tile", "tiles"),
    "triangle": ("triangle", "triangles", "peak", "peaks", "wedge", "pyramid"),
    "stripes": ("stripes", "striped", "lines", "bars", "zebra"),
}
CONFIDENT_SCORE = 0.9
PLACE_MIN_PHOTOS = 3
PLACE_MIN_SHARE = 0.6


def labeling_function(function: LabelingFunction) -> LabelingFunction:
    """Register `function` under its name (the column it gets in the label matrix)."""
    if function.__name__ in LABELING_FUNCTIONS:
        raise ValueError(f"labeling function {function.__name__!r} is registered twice")
    LABELING_FUNCTIONS[function.__name__] = function
    return function


@labeling_function
def title_keywords(photo: Photo) -> str | None:
    """The class whose word the title uses; abstains on none or on words of two classes."""
    words = set(re.findall(r"[a-z]+", str(photo.get("title") or "").lower()))
    named = [label for label, keywords in TITLE_KEYWORDS.items() if words.intersection(keywords)]
    return named[0] if len(named) == 1 else None


@labeling_function
def classifier_confident(photo: Photo) -> str | None:
    """The classifier's content label when its probability is at least CONFIDENT_SCORE."""
    score = photo.get("content_score")
    label = photo.get("content_label")
    if score is None or label not in CONTENT_CLASSES:
        return None
    return str(label) if float(score) >= CONFIDENT_SCORE else None  # type: ignore[arg-type]


@labeling_function
def same_place(photo: Photo) -> str | None:
    """What other labelled photos from the same place mostly show (people shoot the same
    things in the same spots); abstains with few neighbours or no clear majority."""
    counts: Mapping[str, int] = photo.get("place_counts") or {}  # type: ignore[assignment]
    total = sum(counts.values())
    if total < PLACE_MIN_PHOTOS:
        return None
    label, count = min(counts.items(), key=lambda item: (-item[1], item[0]))  # ties: by name
    return label if count / total >= PLACE_MIN_SHARE else None

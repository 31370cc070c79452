"""Which lake tables exist, in which layer, at which version: the lake's table of contents."""

from __future__ import annotations

from dataclasses import dataclass

from lakehouse.resources.lake import LakeResource

LAYERS = {
    "raw_objects": "raw",
    "raw_photos": "raw",
    "raw_users": "raw",
    "raw_photo_labels": "raw",
    "raw_events": "raw",
    "quarantine": "raw",
    "images": "curated",
    "augmented_tensors": "curated",
    "photo_classes": "curated",
    "style_content_classifier": "models",
    "user_activity": "curated",
    "photo_features": "features",
    "popularity_labels": "features",
    "training_set": "features",
    "popularity_model": "models",
    "label_queue": "labels",
    "weak_labels": "labels",
    "weak_label_stats": "labels",
    "releases": "releases",
}


@dataclass(frozen=True)
class TableEntry:
    name: str
    layer: str
    uri: str
    version: int
    rows: int


def layer_of(name: str) -> str:
    """Layer of a table; tables starting with `_` are the lake's own bookkeeping."""
    return "system" if name.startswith("_") else LAYERS.get(name, "unknown")


def table_entries(lake: LakeResource) -> list[TableEntry]:
    """Every Delta table under the lake root, in layer order."""
    entries = []
    for name in lake.table_names():
        table = lake.open(name)
        if table is None:
            continue
        entries.append(
            TableEntry(name, layer_of(name), lake.table_uri(name), table.version(), table.count())
        )
    order = ["raw", "curated", "features", "models", "labels", "releases", "unknown", "system"]
    return sorted(entries, key=lambda e: (order.index(e.layer) if e.layer in order else 9, e.name))

"""The table registry: every lake table's name, layer, natural key and partition column.

Writers take the key from here, the catalog the layer, queries and releases the
natural key for diffs: one place to add a table, and no two places to disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

SYSTEM = "system"
LAYER_ORDER = ("raw", "curated", "features", "models", "labels", "releases", "unknown", SYSTEM)


@dataclass(frozen=True)
class Table:
    """A lake table: its name, layer, the columns that identify a row, its partition column."""

    name: str
    layer: str
    key: tuple[str, ...]
    partition_by: str | None = None

    def __str__(self) -> str:
        return self.name


RAW_OBJECTS = Table("raw_objects", "raw", ("key", "sha256"))
RAW_USERS = Table("raw_users", "raw", ("user_id",))
RAW_PHOTOS = Table("raw_photos", "raw", ("photo_id",))
RAW_PHOTO_LABELS = Table("raw_photo_labels", "raw", ("photo_id",))
RAW_EVENTS = Table("raw_events", "raw", ("event_id",), partition_by="day")
QUARANTINE = Table("quarantine", "raw", ("quarantine_id",))
IMAGES = Table("images", "curated", ("sha256",))
AUGMENTED_TENSORS = Table("augmented_tensors", "curated", ("sha256", "aug_index", "recipe_version"))
USER_ACTIVITY = Table("user_activity", "curated", ("user_id", "hour"), partition_by="day")
PHOTO_FEATURES = Table("photo_features", "features", ("photo_id",))
POPULARITY_LABELS = Table("popularity_labels", "features", ("photo_id",))
TRAINING_SET = Table("training_set", "features", ("photo_id",))
STYLE_CONTENT_CLASSIFIER = Table("style_content_classifier", "models", ("model_version",))
PHOTO_CLASSES = Table("photo_classes", "models", ("sha256", "model_version"))
POPULARITY_MODEL = Table("popularity_model", "models", ("model_version", "training_set_version"))
LABEL_QUEUE = Table("label_queue", "labels", ("photo_id",))
WEAK_LABELS = Table("weak_labels", "labels", ("photo_id",))
WEAK_LABEL_STATS = Table("weak_label_stats", "labels", ("function",))
RELEASES = Table("releases", "releases", ("release", "table_name"))
OBJECT_HASHES = Table("_object_hashes", SYSTEM, ("key",))
INGESTED_FILES = Table("_ingested_files", SYSTEM, ("asset", "key"))

TABLES: dict[str, Table] = {
    table.name: table
    for table in (
        RAW_OBJECTS,
        RAW_USERS,
        RAW_PHOTOS,
        RAW_PHOTO_LABELS,
        RAW_EVENTS,
        QUARANTINE,
        IMAGES,
        AUGMENTED_TENSORS,
        USER_ACTIVITY,
        PHOTO_FEATURES,
        POPULARITY_LABELS,
        TRAINING_SET,
        STYLE_CONTENT_CLASSIFIER,
        PHOTO_CLASSES,
        POPULARITY_MODEL,
        LABEL_QUEUE,
        WEAK_LABELS,
        WEAK_LABEL_STATS,
        RELEASES,
        OBJECT_HASHES,
        INGESTED_FILES,
    )
}


def layer_of(name: str) -> str:
    """Layer of a table; names starting with `_` are the lake's own bookkeeping."""
    if name.startswith("_"):
        return SYSTEM
    table = TABLES.get(name)
    return "unknown" if table is None else table.layer


def natural_key(name: str) -> tuple[str, ...] | None:
    """The columns that identify a row of `name`, None for a table we do not know."""
    table = TABLES.get(name)
    return None if table is None else table.key

"""The table registry: every lake table's name, layer, natural key and partition column.

Writers take the key from here, the catalog the layer, queries and releases the
natural key for diffs: one place to add a table, and no two places to disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

SYSTEM = "system"
LAYER_ORDER = ("raw", "curated", "features", "models", "labels", "releases", "unknown", SYSTEM)


class Table(str):
    """A lake table: its name (the string itself, so it goes wherever a name does), its
    layer, the columns that identify a row and its partition column."""

    layer: str
    key: tuple[str, ...]
    partition_by: str | None

    def __new__(
        cls, name: str, layer: str, key: tuple[str, ...], partition_by: str | None = None
    ) -> Table:
        table = super().__new__(cls, name)
        table.layer, table.key, table.partition_by = layer, key, partition_by
        return table

    @property
    def name(self) -> str:
        return str.__str__(self)

    def __reduce__(self) -> tuple:
        return (Table, (self.name, self.layer, self.key, self.partition_by))


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


def key_of(name: str, key: Sequence[str] | None = None) -> list[str]:
    """`key` if given, else the registry's natural key of `name` (an unknown table must
    say its key: a write never guesses which rows are the same)."""
    if key is not None:
        return list(key)
    found = natural_key(name)
    if found is None:
        raise KeyError(f"table {name!r} is not in the registry (lakehouse.lake.tables): pass key=")
    return list(found)

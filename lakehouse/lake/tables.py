"""The table registry: every lake table's name, layer, natural key and partition column.

Writers take the key from here, the catalog the layer, queries and releases the
natural key for diffs: one place to add a table, and no two places to disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

SYSTEM = "system"
# the Delta partition column of a table with `monthly_files`: YYYY-MM of its day
MONTH = "month"
LAYER_ORDER = ("raw", "curated", "features", "models", "labels", "releases", "unknown", SYSTEM)


class Table(str):
    """A lake table: its name (the string itself, so it goes wherever a name does), its
    layer, the columns that identify a row and its partition column.

    `monthly_files`: the Delta partition is the month of `partition_by` (a `month`
    column, YYYY-MM), not each of its days: readers open a month's few compacted files
    instead of one small file a day (DuckDB over 60 daily files of 1M events took
    1.4-1.6x the time of the same rows in one file; over 3 monthly files, 1.05x).
    """

    layer: str
    key: tuple[str, ...]
    partition_by: str | None
    columns: dict[str, str]
    rows_per_group: int | None
    file_bytes: int | None
    monthly_files: bool

    def __new__(
        cls,
        name: str,
        layer: str,
        key: tuple[str, ...],
        partition_by: str | None = None,
        columns: dict[str, str] | None = None,
        rows_per_group: int | None = None,
        file_bytes: int | None = None,
        monthly_files: bool = False,
    ) -> Table:
        table = super().__new__(cls, name)
        table.layer, table.key, table.partition_by = layer, key, partition_by
        table.columns = dict(columns or {})
        table.rows_per_group = rows_per_group
        table.file_bytes = file_bytes
        table.monthly_files = monthly_files
        return table

    @property
    def name(self) -> str:
        return str.__str__(self)

    def __reduce__(self) -> tuple:
        return (
            Table,
            (
                self.name,
                self.layer,
                self.key,
                self.partition_by,
                self.columns,
                self.rows_per_group,
                self.file_bytes,
                self.monthly_files,
            ),
        )


RAW_OBJECTS = Table(
    "raw_objects",
    "raw",
    ("key", "sha256"),
    columns={
        "key": "object key below the source root, e.g. photos/2026/10/000001.jpg",
        "sha256": "SHA-256 of the object's bytes",
        "size": "bytes",
        "media_type": "image/jpeg or image/png, from the bytes (not the name)",
        "width": "pixels",
        "height": "pixels",
        "first_seen": "when this version of the key was first observed (UTC)",
        "last_seen": "when it stopped being current; null while current",
        "status": "current, replaced or deleted",
    },
)
RAW_USERS = Table("raw_users", "raw", ("user_id",))
RAW_PHOTOS = Table("raw_photos", "raw", ("photo_id",))
RAW_PHOTO_LABELS = Table("raw_photo_labels", "raw", ("photo_id",))
RAW_EVENTS = Table(
    "raw_events",
    "raw",
    ("event_id",),
    partition_by="day",
    monthly_files=True,
    # DuckDB's own row-group size: its unit of parallel work and of skipping by
    # statistics (a month compacted into one group of 500k rows was read by one thread)
    rows_per_group=122_880,
    columns={
        "event_id": "content hash of the event: exact duplicates count once",
        "ts": "when it happened (UTC)",
        "user_id": "who",
        "event": "login, view or like",
        "photo_id": "the photo viewed or liked; null for a login",
        "line": "line number in the day's file",
        "day": "the log file's day (YYYY-MM-DD), the Dagster partition",
        "month": "the day's month (YYYY-MM), the folder its files are stored in",
    },
)
QUARANTINE = Table(
    "quarantine",
    "raw",
    ("quarantine_id",),
    columns={
        "source": "which source the input came from",
        "key": "object key, table or log file",
        "line": "line number (logs) or row id (tables)",
        "sha256": "content hash of the rejected input",
        "reason": "why it was rejected",
        "detail": "more about the reason",
        "first_seen": "when it was first rejected (UTC)",
        "resolved_at": "when the input was fixed; null while still bad",
    },
)
IMAGES = Table("images", "curated", ("sha256",))
# row groups of 1,024 views (28 MB of pixels): a reader decodes whole row groups, and the
# compacted files' single groups of 18k views took 1.8 GB to read 12.7k training views
AUGMENTED_TENSORS = Table(
    "augmented_tensors",
    "curated",
    ("sha256", "aug_index", "recipe_version"),
    rows_per_group=1024,
    # compacted files this large: deleting a changed photo's views rewrites the file that
    # holds them (0.5-1 s for the writer's default of 100 MiB, at 100k photos)
    file_bytes=32 * 2**20,
)
USER_ACTIVITY = Table("user_activity", "curated", ("user_id", "hour"), partition_by="day")
PHOTO_FEATURES = Table("photo_features", "features", ("photo_id",))
POPULARITY_LABELS = Table("popularity_labels", "features", ("photo_id",))
TRAINING_SET = Table(
    "training_set",
    "features",
    ("photo_id",),
    columns={
        "photo_id": "the photo",
        "split": "train, val or test, by a SHA-256 of photo_id (stable across versions)",
        "likes_7d": "the label: likes in [posted_at, posted_at + 7 d)",
        "author_logins_24h": "the author's logins in [posted_at - 24 h, posted_at)",
        "author_likes_7d": "likes the author's photos got in [posted_at - 7 d, posted_at)",
        "account_age_days": "days from the author's sign-up to posted_at",
        "row_sha256": "digest of the row: what changed is rewritten, nothing else",
    },
)
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


def rows_per_group(name: str) -> int | None:
    """The most rows a Parquet row group of `name` holds (None: the writer's default)."""
    table = TABLES.get(name)
    return None if table is None else table.rows_per_group


def file_bytes(name: str) -> int | None:
    """The size compaction aims a data file of `name` at (None: the writer's default)."""
    table = TABLES.get(name)
    return None if table is None else table.file_bytes


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


def column_description(name: str, column: str) -> str | None:
    """What a column of a registry table holds, where the registry says."""
    table = TABLES.get(name)
    return None if table is None else table.columns.get(column)

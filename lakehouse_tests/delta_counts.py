"""Work counted by Delta: what the commits of a table after some version wrote, read from
the table's own history (`operationMetrics`), never from what an asset says it computed.

One home for the tests' "recomputes exactly / nothing" proofs: a test takes
`versions(lake)` before a run and asks `written_since(lake, before)` after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass

from lakehouse.lake import LakeResource

# operationMetrics names per Delta operation, as deltalake 1.6 writes them
_MERGE = ("num_target_rows_inserted", "num_target_rows_updated", "num_target_rows_deleted")
_FILES = {
    "MERGE": ("num_target_files_added", "num_target_files_removed"),
    "WRITE": ("num_added_files", "num_removed_files"),
    "DELETE": ("num_added_files", "num_removed_files"),
    "OPTIMIZE": ("numFilesAdded", "numFilesRemoved"),
}


@dataclass(frozen=True)
class Written:
    """Rows and files that some commits of one table wrote, summed over those commits."""

    commits: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    files_added: int = 0
    files_removed: int = 0

    @property
    def rows(self) -> int:
        """Rows inserted, updated or deleted: the rows the commits changed."""
        return self.inserted + self.updated + self.deleted

    def __add__(self, other: Written) -> Written:
        return Written(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


NOTHING = Written()


def versions(lake: LakeResource) -> dict[str, int | None]:
    """Every table's latest version: what a run is compared against."""
    return {name: lake.version(name) for name in lake.table_names()}


def commits_since(lake: LakeResource, name: str, version: int | None) -> list[dict]:
    """The commits of table `name` after `version` (all of them for None), oldest first,
    each as `DeltaTable.history()` gives it (operation, operationMetrics, our commit info)."""
    table = lake.open(name)
    if table is None:
        return []
    after = -1 if version is None else version
    return sorted(
        (commit for commit in table.history() if commit["version"] > after),
        key=lambda commit: commit["version"],
    )


def counted(commit: dict) -> Written:
    """What one commit wrote, from its operationMetrics; an operation we do not know how
    to count fails the test rather than being counted as nothing."""
    operation = commit["operation"]
    metrics = commit.get("operationMetrics") or {}
    if operation == "CREATE TABLE":
        return Written(commits=1)
    if operation not in _FILES:
        raise AssertionError(f"no row count for a {operation} commit: {commit}")
    added, removed = (int(metrics.get(name, 0)) for name in _FILES[operation])
    files = {"files_added": added, "files_removed": removed}
    if operation == "MERGE":
        inserted, updated, deleted = (int(metrics[name]) for name in _MERGE)
        return Written(1, inserted, updated, deleted, **files)
    if operation == "WRITE":
        mode = str(commit.get("operationParameters", {}).get("mode", "")).lower()
        if mode == "overwrite":
            raise AssertionError(f"an overwrite rewrote table rows: {commit}")
        return Written(1, inserted=int(metrics["num_added_rows"]), **files)
    if operation == "DELETE":
        return Written(1, deleted=int(metrics["num_deleted_rows"]), **files)
    return Written(1, **files)  # OPTIMIZE: the same rows in fewer files


def written(lake: LakeResource, name: str, version: int | None) -> Written:
    """What the commits of table `name` after `version` wrote, summed."""
    total = NOTHING
    for commit in commits_since(lake, name, version):
        total = total + counted(commit)
    return total


def written_since(lake: LakeResource, before: dict[str, int | None]) -> dict[str, Written]:
    """Per table (those in `before` and any created since): what was written after `before`."""
    names = set(before) | set(lake.table_names())
    return {name: written(lake, name, before.get(name)) for name in sorted(names)}


def rows_changed(lake: LakeResource, before: dict[str, int | None]) -> dict[str, int]:
    """Per table, the rows inserted, updated or deleted since `before` (0 for none)."""
    return {name: w.rows for name, w in written_since(lake, before).items()}


@contextmanager
def left_unchanged(lake: LakeResource, what: str) -> Iterator[None]:
    """Fail if any table of `lake` gained or lost a version meanwhile: a shared, read-only
    lake (the session's demo lake) must be copied before a test writes to it."""
    before = versions(lake)
    yield
    after = versions(lake)
    changed = {name: (before.get(name), after.get(name)) for name in before.keys() | after.keys()}
    assert after == before, (
        f"a test wrote into {what}; work on a copy: "
        f"{ {name: v for name, v in changed.items() if v[0] != v[1]} }"
    )

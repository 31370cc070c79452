"""The lake: every Delta table we write lives under one root, local or on S3.

All writes go through here so that every table gets the same guarantees:
merges on a natural key (idempotent re-runs), commits that carry the Dagster
run that made them, no commit at all when nothing changed, and optimistic
concurrency conflicts retried on a fresh snapshot. How a merge reconciles
types lives in `merge`, how storage failures read in `faults`, the blob store
in `blobs`, the UI's metadata in `metadata`.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from pathlib import Path
from typing import TypeVar

import dagster as dg
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.table import TableMerger
from deltalake.transaction import AddAction, RemoveAction

from lakehouse.failpoints import during_write, failpoint
from lakehouse.lake import blobs
from lakehouse.lake.faults import storage_faults_as_one_line
from lakehouse.lake.merge import conform, merge_predicate, widened
from lakehouse.lake.tables import MONTH, TABLES, file_bytes, key_of, rows_per_group
from lakehouse.resources.errors import SettingError
from lakehouse.resources.keys import checked_key, local_path
from lakehouse.settings import LAKE_VAR, is_s3, s3_storage_options

T = TypeVar("T")
log = logging.getLogger(__name__)

COMMIT_RETRIES = 8
# zstd: files about half the size of the default snappy, so scans read half the bytes.
# Pages end at the writer's 1 MiB size bound, not at its default of 20,000 rows: DuckDB
# paid per page, and scans of deltalake's files took 1.05-1.10x the same rows in
# polars' files, which have no row bound (measured on 1M events: equal without it).
PAGE_ROWS = 2**30
WRITER = WriterProperties(compression="ZSTD", data_page_row_count_limit=PAGE_ROWS)


def writer_for(name: str) -> WriterProperties:
    """WRITER, with the table's row-group bound where the registry gives one."""
    rows = rows_per_group(name)
    if rows is None:
        return WRITER
    return WriterProperties(
        compression="ZSTD", data_page_row_count_limit=PAGE_ROWS, max_row_group_size=rows
    )


# Arrow's scan reads 4 files and 16 batches ahead of the consumer by default: over
# raw_events' monthly files (22 row groups each), photo_features' read of the likes at
# 10.5M events peaked at 611 MiB in 0.63 s, against 370 MiB in 0.37 s with this bound
# (60 daily files: 0.07-0.08 s either way)
READ_AHEAD = {"fragment_readahead": 2, "batch_readahead": 4}

# a materialization that committed more batches than this compacts its table after
COMPACT_AFTER_COMMITS = 16
COMPACTION = "compaction"  # commit info: the id of a compaction, to find its commit


class LakeResource(dg.ConfigurableResource):
    """Root of the Delta tables (`data/lake` locally, `s3://bucket/lake` in production)."""

    root: str

    def table_uri(self, name: str) -> str:
        """Where table `name` lives; a name reaching outside the root is refused."""
        if is_s3(self.root):
            return f"{self.root.rstrip('/')}/{checked_key(self.root, name)}"
        return str(local_path(self.root, name))

    def storage_options(self) -> dict[str, str] | None:
        return s3_storage_options() if is_s3(self.root) else None

    def ensure_writable(self) -> None:
        """Fail early, naming the variable, when the lake root cannot be written."""
        if is_s3(self.root):
            return
        root = Path(self.root)
        probe = root / f".write-probe-{uuid.uuid4().hex}"
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise SettingError(
                f"{LAKE_VAR}={self.root!r}: the lake directory cannot be written ({exc.strerror})"
            ) from None

    def open(self, name: str, version: int | None = None) -> DeltaTable | None:
        """The table at `version` (latest by default), or None if it was never written."""
        try:
            with self._storage_faults(name, "reading"):
                return DeltaTable(
                    self.table_uri(name), version=version, storage_options=self.storage_options()
                )
        except TableNotFoundError:
            return None

    def version(self, name: str) -> int | None:
        table = self.open(name)
        return None if table is None else table.version()

    def commit_metadata(self, name: str, version: int | None = None) -> dict[str, object]:
        """What the commit that made `version` (latest by default) recorded besides the rows."""
        if version is None:
            version = self.version(name)
            if version is None:
                return {}
        return {**self.commit_info(name, version), "version": version}

    def row_count(self, name: str) -> int:
        """Rows in the latest version (0 for a table never written)."""
        table = self.open(name)
        return 0 if table is None else table.count()

    def read(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        filters: list[tuple[str, str, object]] | None = None,
        version: int | None = None,
        where: pc.Expression | None = None,
    ) -> pl.DataFrame | None:
        """Rows of a table as a polars frame (Arrow underneath, no copy), None if absent.

        `filters` are (column, op, value) tuples, on partition or data columns alike
        (see `filter_expression`); on a table stored by month, a filter on its days also
        skips the other months' files. `where` is an Arrow expression, for what the
        tuples cannot say (a text data column compared as string needs a cast first:
        files a merge rewrote store it as string_view)."""
        table = self.open(name, version)
        if table is None:
            return None
        wanted = list(columns) if columns else None
        plain = cast = where
        if filters:
            partitions = list(table.metadata().partition_columns)
            filters = [*filters, *month_filters(name, filters, partitions)]
            plain = filter_expression(filters, partitions)
            cast = filter_expression(filters, partitions, cast=True)
            if where is not None:
                plain, cast = plain & where, cast & where
        with self._storage_faults(name, "reading"):
            dataset = table.to_pyarrow_dataset()
            try:
                arrow = dataset.to_table(columns=wanted, filter=plain, **READ_AHEAD)
            except pa.ArrowNotImplementedError:
                if cast is plain:
                    raise
                # a file a merge wrote holds text as string_view, which Arrow compares
                # with no string: compared as string, no file is skipped by its statistics
                arrow = dataset.to_table(columns=wanted, filter=cast, **READ_AHEAD)
        return pl.from_arrow(arrow)  # type: ignore[return-value]

    def read_or_empty(
        self,
        name: str,
        schema: dict[str, pl.DataType],
        filters: list[tuple[str, str, object]] | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Rows of a table (only `columns`, if given), or an empty frame of `schema` if it
        was never written."""
        rows = self.read(name, columns=columns, filters=filters)
        return pl.DataFrame(schema=schema) if rows is None else rows

    def row_groups(
        self,
        name: str,
        columns: Sequence[str],
        bounds: tuple[str, object, object] | None = None,
    ) -> Iterator[pa.Table]:
        """Rows of a table (only `columns`) one Parquet row group at a time, read in this
        thread: a table larger than memory streams through (nothing if absent). Arrow
        tables, so that a caller picks the rows it wants before any large value is copied.

        `bounds` (column, low, high) skips the files (the Delta log's statistics) and
        the row groups (the footers') whose values of that column all lie outside
        [low, high]; the rows of a group that may hold such values all come back, so
        filter them where it matters. Not Arrow's dataset scanner: it decodes row groups
        ahead on its own threads while the caller works, whatever its readahead settings
        (photo_classes' inference let it run +1.4 GiB ahead at 100k photos).
        """
        table = self.open(name)
        if table is None:
            return
        files = (
            None if bounds is None else [(bounds[0], ">=", bounds[1]), (bounds[0], "<=", bounds[2])]
        )
        with self._storage_faults(name, "reading"):
            for fragment in table.to_pyarrow_dataset(file_pruning_predicate=files).get_fragments():
                with fragment.filesystem.open_input_file(fragment.path) as source:
                    parquet = pq.ParquetFile(source)
                    for group in range(parquet.num_row_groups):
                        if bounds and not may_hold(parquet.metadata.row_group(group), *bounds):
                            continue
                        yield parquet.read_row_group(
                            group, columns=list(columns), use_threads=False
                        )

    def upsert(
        self,
        name: str,
        rows: pl.DataFrame,
        key: Sequence[str] | None = None,
        *,
        commit_info: dict[str, str],
        partition_by: Sequence[str] | None = None,
    ) -> bool:
        """Merge `rows` on `key`: matched rows are replaced, new ones inserted.

        Returns whether a commit happened (none for an empty frame), so callers
        can promise "no change, no new table version".
        """
        if rows.is_empty():
            return False
        key = key_of(name, key)

        def attempt() -> None:
            if self._create(name, rows, commit_info, partition_by):
                return
            (
                self._merger(name, self._conform(name, rows, commit_info), key, commit_info)
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )

        self._write(name, attempt)
        return True

    def sync_snapshot(
        self,
        name: str,
        rows: pl.DataFrame,
        key: Sequence[str] | None = None,
        *,
        commit_info: dict[str, str],
        fingerprint: str = "row_sha256",
    ) -> dict[str, int]:
        """Make the table hold exactly `rows`, in one atomic merge, touching only changes.

        Rows are compared by their `fingerprint` column: new keys are inserted,
        changed ones replaced, keys gone from `rows` deleted. Nothing changed
        means no commit.
        """
        key = key_of(name, key)
        current = self.read(name, columns=[*key, fingerprint])
        # an empty snapshot still creates the table: readers see "no rows", not "missing"
        if current is None and self._write(name, lambda: self._create(name, rows, commit_info)):
            return {"inserted": rows.height, "updated": 0, "deleted": 0}
        if current is None:  # another writer created it meanwhile: compare with its rows
            current = self.read(name, columns=[*key, fingerprint])
        paired = rows.join(current, on=list(key), how="left", suffix="_old")
        inserted = paired.filter(pl.col(f"{fingerprint}_old").is_null())
        updated = paired.filter(pl.col(f"{fingerprint}_old") != pl.col(fingerprint))
        gone = current.join(rows.select(key), on=list(key), how="anti")
        counts = {"inserted": inserted.height, "updated": updated.height, "deleted": gone.height}
        if not any(counts.values()):
            return counts
        changes = pl.concat(
            [
                pl.concat([inserted, updated])
                .select(rows.columns)
                .with_columns(_delete=pl.lit(False)),
                gone.select(key).with_columns(_delete=pl.lit(True)),
            ],
            how="diagonal_relaxed",
        )
        columns = {column: f"s.{column}" for column in rows.columns}

        def attempt() -> None:
            (
                self._merger(name, self._conform(name, changes, commit_info), key, commit_info)
                .when_matched_delete(predicate="s._delete")
                .when_matched_update(updates=columns, predicate="NOT s._delete")
                .when_not_matched_insert(updates=columns, predicate="NOT s._delete")
                .execute()
            )

        self._write(name, attempt)
        return counts

    def insert_new(
        self,
        name: str,
        rows: pl.DataFrame,
        key: Sequence[str] | None = None,
        *,
        commit_info: dict[str, str],
    ) -> int:
        """Insert the rows whose key is not in the table yet, in one commit; returns how many.

        Two writers racing on the same key conflict, and the retry on a fresh
        snapshot finds the key taken, so a key is inserted at most once.
        """
        if rows.is_empty():
            return 0
        key = key_of(name, key)

        def attempt() -> int:
            if self._create(name, rows, commit_info):
                return rows.height
            metrics = (
                self._merger(name, rows, key, commit_info).when_not_matched_insert_all().execute()
            )
            return int(metrics["num_target_rows_inserted"])

        return self._write(name, attempt)

    def delete_keys(self, name: str, keys: pl.DataFrame, *, commit_info: dict[str, str]) -> bool:
        """Delete the rows whose key columns match a row of `keys` (one commit, if any)."""
        if keys.is_empty() or self.open(name) is None:
            return False
        self._write(
            name,
            lambda: (
                self._merger(name, keys, keys.columns, commit_info).when_matched_delete().execute()
            ),
        )
        return True

    def compact(
        self,
        name: str,
        *,
        commit_info: dict[str, str],
        since: int | None = None,
        partitions: list[tuple[str, str, object]] | None = None,
    ) -> dict[str, int]:
        """Merge small data files into large ones (same rows, one commit), then write a
        checkpoint, so readers open few files and replay a short log. With `since`, only
        when more than COMPACT_AFTER_COMMITS commits came after version `since`; with
        `partitions` (deltalake partition filters), only in those partitions.

        Returns the files removed and added (zeros when nothing was done).
        """
        table = self.open(name)
        if table is None or (
            since is not None and table.version() - since <= COMPACT_AFTER_COMMITS
        ):
            return {"files_removed": 0, "files_added": 0}

        def attempt() -> dict[str, int]:
            table = self.open(name)
            read_version, marker = table.version(), uuid.uuid4().hex  # type: ignore[union-attr]
            failpoint(f"compact/{name}")
            metrics = table.optimize.compact(  # type: ignore[union-attr]
                partition_filters=partitions,
                target_size=file_bytes(name),
                writer_properties=writer_for(name),
                commit_properties=_commit({**commit_info, COMPACTION: marker}),
            )
            removed = int(metrics.get("numFilesRemoved", 0))
            if not removed:
                return {"files_removed": 0, "files_added": 0}
            undone = self._undo_doubled_compaction(name, read_version, marker, commit_info)
            self.open(name).create_checkpoint()  # type: ignore[union-attr]
            if undone:
                return {"files_removed": 0, "files_added": 0}
            return {"files_removed": removed, "files_added": int(metrics.get("numFilesAdded", 0))}

        return self._write(name, attempt)

    def _undo_doubled_compaction(
        self, name: str, read_version: int, marker: str, commit_info: dict[str, str]
    ) -> bool:
        """Take back compaction `marker` (read at `read_version`) where a concurrent one
        removed some of the same files; True if it did.

        deltalake's optimize does not see two compactions of the same files as
        conflicting, and both land: every row of those files twice (concurrent backfills
        of days in one month did this). Read from the log, commit by commit (one GET
        each), that is cheap to see; the remedy is one commit that removes the files
        this compaction wrote and adds back those it removed that the other did not
        (still stored: nothing is vacuumed), so every row is there once again."""
        ours, others = None, set()
        for version in range(read_version + 1, self.open(name).version() + 1):  # type: ignore[union-attr]
            actions = self.log_actions(name, version)
            info = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
            if info.get(COMPACTION) == marker:
                ours = actions
                break
            others |= {a["remove"]["path"] for a in actions if "remove" in a}
        if ours is None:
            return False
        removed = {a["remove"]["path"] for a in ours if "remove" in a}
        doubled = removed & others
        if not doubled:
            return False
        written = [a["add"] for a in ours if "add" in a]
        log.warning(
            "compaction of %r removed %d file(s) a concurrent compaction had removed too; "
            "taking it back (the other one's files keep those rows)",
            name,
            len(doubled),
        )
        before = DeltaTable(
            self.table_uri(name), version=read_version, storage_options=self.storage_options()
        )
        kept = [
            row
            for row in pa.table(before.get_add_actions(flatten=False)).to_pylist()
            if row["path"] in removed - doubled
        ]

        def undo() -> None:
            now = int(time.time() * 1000)
            table = self.open(name)
            actions: list[AddAction | RemoveAction] = [
                RemoveAction(
                    path=add["path"],
                    data_change=False,
                    deletion_timestamp=now,
                    size=add["size"],
                    partition_values=add["partitionValues"],
                )
                for add in written
            ]
            actions += [add_action(row) for row in kept]
            table.create_write_transaction(  # type: ignore[union-attr]
                actions,
                mode="append",
                schema=table.schema(),  # type: ignore[union-attr]
                partition_by=table.metadata().partition_columns or None,  # type: ignore[union-attr]
                commit_properties=_commit({**commit_info, "took_back_compaction": marker}),
            )

        _retry_conflicts(name, undo)
        return True

    def compact_months(
        self, name: str, days: Sequence[str], *, commit_info: dict[str, str]
    ) -> dict[str, int]:
        """After `days` were replaced in a table with monthly files: merge the small files
        of their months (each commit of days added its own), so that a month is read
        from a few large files. Nothing for a table stored by day."""
        table = self.open(name)
        partition_column = getattr(TABLES.get(name), "partition_by", None)
        if table is None or partition_column is None or not days:
            return {"files_removed": 0, "files_added": 0}
        folder = folder_column(name, partition_column, table)
        if folder is None or folder == partition_column:
            return {"files_removed": 0, "files_added": 0}
        months = sorted(months_of(days))
        return self.compact(name, commit_info=commit_info, partitions=[(folder, "in", months)])

    def object_key(self, sha256: str) -> str:
        """Where content-addressed bytes (model weights) live: objects/sha256/ab/abcdef…"""
        return blobs.object_key(sha256)

    def put_object(self, data: bytes) -> str:
        """Store bytes under their SHA-256 (idempotent: same bytes, same key); returns the key."""
        with self._storage_faults("objects", "writing"):
            return blobs.put_object(self.root, data)

    def commit_info(self, name: str, version: int) -> dict[str, object]:
        """What commit `version` of table `name` recorded of itself (its `commitInfo`
        action: operation, metrics and our commit info), read from its log file by name:
        one GET, no listing of the log."""
        for action in self.log_actions(name, version):
            if "commitInfo" in action:
                return action["commitInfo"]
        return {}

    def log_actions(self, name: str, version: int) -> list[dict[str, dict]]:
        """The actions commit `version` of table `name` wrote, from its log file by name."""
        entry = self.get_object(f"{name}/_delta_log/{version:020d}.json")
        return [json.loads(line) for line in entry.splitlines() if line.strip()]

    def put_at(self, key: str, data: bytes) -> None:
        """Store bytes under `key`, a name derived from what decides them (write-once)."""
        with self._storage_faults("objects", "writing"):
            blobs.put_at(self.root, key, data)

    def has_object(self, key: str) -> bool:
        """Whether put_object stored `key`."""
        with self._storage_faults("objects", "reading"):
            return blobs.has_object(self.root, key)

    def get_object(self, key: str) -> bytes:
        """Bytes stored by put_object; a key reaching outside the root is refused."""
        with self._storage_faults("objects", "reading"):
            return blobs.get_object(self.root, key)

    def replace_partitions(
        self,
        name: str,
        rows: pl.DataFrame,
        *,
        values: Sequence[str],
        commit_info: dict[str, str],
        key: Sequence[str] | None = None,
        partition_column: str | None = None,
    ) -> None:
        """Make some partitions hold exactly `rows` (one commit, idempotent).

        A merge on (partition, key) that also deletes the partitions' rows missing
        from `rows`, not an overwrite: deltalake does not see two overwrites of the
        same partitions as conflicting, so two runs at once would both land; merges
        do conflict, and the loser retries on a fresh snapshot. `values` are
        partition keys we generated (dates), never user input.

        A table with monthly files (`Table.monthly_files`) stores its days by month:
        the day stays a plain column, matched like the key, and a month's other days
        are left as they are. A table keeps the layout it was created with.
        """
        key = key_of(name, key)
        partition_column = partition_column or getattr(TABLES.get(name), "partition_by", None)
        if partition_column is None:
            raise KeyError(f"table {name!r} has no partition column in the registry")
        listed = ", ".join(f"'{value}'" for value in values)

        def attempt() -> None:
            table = self.open(name)
            folder = folder_column(name, partition_column, table)
            stored = rows
            if folder is not None and folder != partition_column:
                stored = rows.with_columns(pl.col(partition_column).str.slice(0, 7).alias(folder))
            if table is None and self._create(
                name, stored, commit_info, [folder or partition_column]
            ):
                return
            on = [partition_column, *key]
            source = self._conform(name, stored, commit_info)
            table = self.open(name)
            merge = (
                self._merger(name, source, on, commit_info, table=table)
                .when_matched_update_all()
                .when_not_matched_insert_all()
            )
            # Deleting the rows `rows` lacks makes deltalake read every file of the table
            # (the partition bounds do not prune that branch): +0.5-0.9 GB a chunk of 8 days
            # merged into 3-5M events, growing with the table. Partitions the snapshot
            # holds no file of (a first build) have nothing to delete, so the branch is
            # added only where they do; a writer that fills them meanwhile conflicts with
            # this merge, and the retry sees its files.
            if table is not None and holds_rows_of(table, partition_column, folder, values):
                predicate = f"t.{partition_column} IN ({listed})"
                if folder is not None and folder != partition_column:
                    months = ", ".join(f"'{month}'" for month in sorted(months_of(values)))
                    predicate = f"t.{folder} IN ({months}) AND {predicate}"
                merge = merge.when_not_matched_by_source_delete(predicate=predicate)
            merge.execute()

        self._write(name, attempt)

    def _write(self, name: str, attempt: Callable[[], T]) -> T:
        """Every commit to table `name` goes through here: conflicts retried on a fresh
        snapshot, and the crash points `write/<name>` (data files written, no commit
        yet) and `committed/<name>` (committed, nothing after it done yet)."""
        with self._storage_faults(name, "writing"), during_write(name, self.table_uri(name)):
            result = _retry_conflicts(name, attempt)
        failpoint(f"committed/{name}")
        return result

    def _storage_faults(self, name: str, doing: str) -> AbstractContextManager[None]:
        """Storage failures as one line naming the table, where it lives and the cause
        (for a table write, also the version it stays at); anything else passes through."""
        keeps = doing == "writing" and name != "objects"
        return storage_faults_as_one_line(
            lambda: f"{LAKE_VAR}={self.root!r}: {doing} {name!r} at {self.table_uri(name)}",
            (lambda: self.version(name)) if keeps else None,
        )

    def _merger(
        self,
        name: str,
        rows: pl.DataFrame | pa.Table,
        key: Sequence[str],
        info: dict[str, str],
        table: DeltaTable | None = None,
    ) -> TableMerger:
        """A merge of `rows` (alias s) into the latest table (alias t; `table`, a snapshot
        already opened, if given) on the key columns, bounded by the rows' key ranges;
        columns new to the table are added to its schema."""
        source = rows.to_arrow() if isinstance(rows, pl.DataFrame) else rows
        return (table or self.open(name)).merge(  # type: ignore[union-attr]
            source,
            predicate=merge_predicate(source, key),
            source_alias="s",
            target_alias="t",
            merge_schema=True,
            writer_properties=writer_for(name),
            commit_properties=_commit(info),
        )

    def _conform(self, name: str, rows: pl.DataFrame, commit_info: dict[str, str]) -> pa.Table:
        """`rows` in the table's column types, never losing a value on the way (see
        `merge.conform`): a table column whose values all fit the new, wider type is
        widened first (the table rewritten in one commit, same rows); any other type
        change fails before anything is written."""
        table = self.open(name)
        arrow, widen = conform(rows.to_arrow(), table.schema())  # type: ignore[union-attr]
        if widen:
            self._widen(name, widen, commit_info)
        return arrow

    def _widen(self, name: str, types: dict[str, pa.DataType], commit_info: dict[str, str]) -> None:
        """Rewrite the table with some columns in wider types, in one commit, if every
        stored value converts exactly; otherwise fail, naming the columns and types.

        The rewrite replaces the files of the snapshot it read, not those of the
        latest: rows another writer commits meanwhile are kept, not overwritten.
        """
        table = self.open(name)
        rows = table.to_pyarrow_table()  # type: ignore[union-attr]
        failpoint(f"widen/{name}")
        rows = widened(rows, types, f"table {name!r} at {self.table_uri(name)}")
        write_deltalake(
            table,  # type: ignore[arg-type]
            rows,
            mode="overwrite",
            schema_mode="overwrite",
            partition_by=table.metadata().partition_columns or None,  # type: ignore[union-attr]
            storage_options=self.storage_options(),
            writer_properties=writer_for(name),
            commit_properties=_commit({**commit_info, "widened": ", ".join(types)}),
        )

    def _create(
        self,
        name: str,
        rows: pl.DataFrame,
        commit_info: dict[str, str],
        partition_by: Sequence[str] | None = None,
    ) -> bool:
        """Write version 0 of table `name` holding `rows`; False if the table exists.

        Version 0 or nothing: two runs creating the same table at once both pass
        deltalake's "table exists" check, and deltalake would commit the loser as
        version 1, appending the same rows again. With no commit retries the loser
        fails as a conflict, and the caller's retry finds the table and merges.
        """
        if self.open(name) is not None:
            return False
        failpoint(f"create/{name}")
        if not is_s3(self.root):
            os.makedirs(self.table_uri(name), exist_ok=True)
        write_deltalake(
            self.table_uri(name),
            rows.to_arrow(),
            mode="error",
            partition_by=list(partition_by) if partition_by else None,
            storage_options=self.storage_options(),
            writer_properties=writer_for(name),
            commit_properties=_commit(commit_info, retries=0),
        )
        return True

    def table_names(self) -> list[str]:
        """Names of the Delta tables present under the root."""
        if is_s3(self.root):
            from lakehouse.resources.object_store import ObjectStoreResource

            store = ObjectStoreResource(uri=self.root)
            return sorted(
                {info.key.split("/", 1)[0] for info in store.list("") if "/_delta_log/" in info.key}
            )
        root = Path(self.root)
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if _has_commit(p))


def _has_commit(table: Path) -> bool:
    """A directory is a table once a commit is in its log: a first write that crashed
    leaves data files (and maybe an empty log) but no table."""
    log = table / "_delta_log"
    return log.is_dir() and any(log.glob("*.json"))


def _commit(info: dict[str, str], retries: int | None = None) -> CommitProperties:
    return CommitProperties(custom_metadata=dict(info), max_commit_retries=retries)


def _retry_conflicts(name: str, attempt: Callable[[], T]) -> T:
    """Optimistic concurrency: on a conflicting commit, redo the write on a fresh snapshot.

    Each retry is logged (logger `lakehouse.lake.resource`, INFO), so a run's log shows
    when concurrent writers met on a table."""
    delay = 0.05
    for tries in range(1, COMMIT_RETRIES + 2):
        try:
            return attempt()
        except (CommitFailedError, DeltaError) as exc:
            if tries > COMMIT_RETRIES or not _is_conflict(exc):
                raise
            log.info(
                "commit to %r conflicted with a concurrent writer; "
                "retrying on a fresh snapshot (attempt %d)",
                name,
                tries + 1,
            )
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


def _is_conflict(exc: Exception) -> bool:
    if isinstance(exc, CommitFailedError):
        return True
    text = str(exc).lower()
    return "already exists" in text or "conflict" in text or "concurrent" in text


def may_hold(group: pq.RowGroupMetaData, column: str, low: object, high: object) -> bool:
    """Whether a row group's statistics of `column` overlap [low, high] (True without them)."""
    for index in range(group.num_columns):
        chunk = group.column(index)
        if chunk.path_in_schema != column:
            continue
        stats = chunk.statistics
        if stats is None or not stats.has_min_max:
            return True
        least, most = (v.decode() if isinstance(v, bytes) else v for v in (stats.min, stats.max))
        return not (most < low or least > high)  # type: ignore[operator]
    return True


def add_action(row: dict) -> AddAction:
    """An add action for a stored file, from a snapshot's `get_add_actions` row (its
    statistics written back in the log's JSON form)."""

    def plain(values: dict | None) -> dict:
        return {
            column: value.isoformat().replace("+00:00", "Z")
            if isinstance(value, datetime | date)
            else value
            for column, value in (values or {}).items()
            if value is not None
        }

    stats = {
        "numRecords": row["num_records"],
        "minValues": plain(row.get("min")),
        "maxValues": plain(row.get("max")),
        "nullCount": plain(row.get("null_count")),
    }
    return AddAction(
        path=row["path"],
        size=row["size_bytes"],
        partition_values=row.get("partition") or {},
        modification_time=row["modification_time"],
        data_change=False,
        stats=json.dumps(stats, default=str),
    )


def folder_column(name: str, partition_column: str, table: DeltaTable | None) -> str | None:
    """The Delta partition column of day-partitioned table `name`: the one it was created
    with (None for a table another tool created with none: its days stay a data column),
    else `month` where the registry gives it monthly files, else the day itself."""
    if table is not None:
        stored = table.metadata().partition_columns
        return stored[0] if stored else None
    entry = TABLES.get(name)
    monthly = entry is not None and entry.monthly_files and entry.partition_by == partition_column
    return MONTH if monthly else partition_column


def months_of(days: Sequence[str]) -> set[str]:
    """The months (YYYY-MM) of some days (YYYY-MM-DD)."""
    return {day[:7] for day in days}


def holds_rows_of(
    table: DeltaTable, column: str, folder: str | None, values: Sequence[str]
) -> bool:
    """Whether the snapshot may hold rows of the partitions `values` of `column`: a file
    in their folders, or (monthly files, or no folders at all) a file of their months
    whose statistics of `column` span one of them (a file without statistics counts as
    holding them)."""
    if folder == column:
        return bool(table.file_uris(file_pruning_predicate=[(column, "in", list(values))]))
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return False
    months = months_of(values)
    names = actions.column_names
    folders = (
        actions.column(f"partition.{folder}").to_pylist()
        if folder is not None
        else [None] * actions.num_rows
    )
    lows = actions.column(f"min.{column}").to_pylist() if f"min.{column}" in names else None
    highs = actions.column(f"max.{column}").to_pylist() if f"max.{column}" in names else None
    for index, month in enumerate(folders):
        if folder is not None and month not in months:
            continue
        low = None if lows is None else lows[index]
        high = None if highs is None else highs[index]
        if low is None or high is None or any(low <= value <= high for value in values):
            return True
    return False


FILTER_OPS: dict[str, Callable[[pc.Expression, object], pc.Expression]] = {
    "=": lambda field, value: field == value,
    "==": lambda field, value: field == value,
    "!=": lambda field, value: field != value,
    "<": lambda field, value: field < value,
    "<=": lambda field, value: field <= value,
    ">": lambda field, value: field > value,
    ">=": lambda field, value: field >= value,
    "in": lambda field, value: field.isin(value),
    "not in": lambda field, value: ~field.isin(value),
}


def filter_expression(
    filters: Sequence[tuple[str, str, object]], partitions: Sequence[str] = (), cast: bool = False
) -> pc.Expression:
    """(column, op, value) tuples as one Arrow expression (all must hold).

    With `cast`, a text data column is compared as string: files a merge wrote store it
    as string_view, which Arrow 26 compares with neither a string value nor the other
    files' statistics (deltalake's own conversion of the tuples failed so on raw_events'
    `day` once it became a data column). The cast costs the skipping of files and row
    groups by their statistics, so `read` tries without it first. Partition columns
    are never cast.
    """
    expression: pc.Expression | None = None
    for column, op, value in filters:
        if op not in FILTER_OPS:
            raise ValueError(f"filter {column!r} {op!r}: not one of {sorted(FILTER_OPS)}")
        if isinstance(value, tuple | set | frozenset):
            value = sorted(value)  # isin takes a list
        values = value if isinstance(value, list) else [value]
        field = pc.field(column)
        if cast and column not in partitions and any(isinstance(item, str) for item in values):
            field = field.cast(pa.string())
        term = FILTER_OPS[op](field, value)
        expression = term if expression is None else expression & term
    if expression is None:
        raise ValueError("no filter given")
    return expression


def month_filters(
    name: str, filters: Sequence[tuple[str, str, object]], partitions: Sequence[str]
) -> list[tuple[str, str, object]]:
    """For a table stored in monthly files, the months that filters on its days allow: a
    read of some days opens the files of their months only (their days are a data column)."""
    entry = TABLES.get(name)
    if entry is None or MONTH not in partitions or entry.partition_by is None:
        return []
    found: list[tuple[str, str, object]] = []
    for column, op, value in filters:
        if column == entry.partition_by and op in ("=", "==", "in"):
            days = [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
            found.append((MONTH, "in", sorted(months_of(days))))
    return found

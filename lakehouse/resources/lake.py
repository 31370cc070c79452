"""The lake: every Delta table we write lives under one root, local or on S3.

All writes go through here so that every table gets the same guarantees:
merges on a natural key (idempotent re-runs), commits that carry the Dagster
run that made them, no commit at all when nothing changed, and optimistic
concurrency conflicts retried on a fresh snapshot.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import dagster as dg
import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.table import TableMerger

from lakehouse.settings import LAKE_VAR, ConfigError, is_s3, parse_s3, s3_storage_options

T = TypeVar("T")

COMMIT_RETRIES = 8


class LakeResource(dg.ConfigurableResource):
    """Root of the Delta tables (`data/lake` locally, `s3://bucket/lake` in production)."""

    root: str

    def table_uri(self, name: str) -> str:
        if is_s3(self.root):
            return f"{self.root.rstrip('/')}/{name}"
        return str(Path(self.root).resolve() / name)

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
            raise ConfigError(
                f"{LAKE_VAR}={self.root!r}: the lake directory cannot be written ({exc.strerror})"
            ) from exc

    def open(self, name: str, version: int | None = None) -> DeltaTable | None:
        """The table at `version` (latest by default), or None if it was never written."""
        try:
            return DeltaTable(
                self.table_uri(name), version=version, storage_options=self.storage_options()
            )
        except TableNotFoundError:
            return None

    def version(self, name: str) -> int | None:
        table = self.open(name)
        return None if table is None else table.version()

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
    ) -> pl.DataFrame | None:
        """Rows of a table as a polars frame (Arrow underneath, no copy), None if absent."""
        table = self.open(name, version)
        if table is None:
            return None
        arrow = table.to_pyarrow_table(columns=list(columns) if columns else None, filters=filters)
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

    def upsert(
        self,
        name: str,
        rows: pl.DataFrame,
        key: Sequence[str],
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

        def attempt() -> None:
            if self.open(name) is None:
                self._create(name, rows, commit_info, partition_by)
                return
            (
                self._merger(name, rows, key, commit_info, merge_schema=True)
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )

        _retry_conflicts(attempt)
        return True

    def sync_snapshot(
        self,
        name: str,
        rows: pl.DataFrame,
        key: Sequence[str],
        *,
        commit_info: dict[str, str],
        fingerprint: str = "row_sha256",
    ) -> dict[str, int]:
        """Make the table hold exactly `rows`, in one atomic merge, touching only changes.

        Rows are compared by their `fingerprint` column: new keys are inserted,
        changed ones replaced, keys gone from `rows` deleted. Nothing changed
        means no commit.
        """
        current = self.read(name, columns=[*key, fingerprint])
        if current is None:
            # an empty snapshot still creates the table: readers see "no rows", not "missing"
            _retry_conflicts(lambda: self._create(name, rows, commit_info, None))
            return {"inserted": rows.height, "updated": 0, "deleted": 0}
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
                self._merger(name, changes, key, commit_info)
                .when_matched_delete(predicate="s._delete")
                .when_matched_update(updates=columns, predicate="NOT s._delete")
                .when_not_matched_insert(updates=columns, predicate="NOT s._delete")
                .execute()
            )

        _retry_conflicts(attempt)
        return counts

    def delete_keys(self, name: str, keys: pl.DataFrame, *, commit_info: dict[str, str]) -> bool:
        """Delete the rows whose key columns match a row of `keys` (one commit, if any)."""
        if keys.is_empty() or self.open(name) is None:
            return False
        _retry_conflicts(
            lambda: (
                self._merger(name, keys, keys.columns, commit_info).when_matched_delete().execute()
            )
        )
        return True

    def object_key(self, sha256: str) -> str:
        """Where content-addressed bytes (model weights) live: objects/sha256/ab/abcdef…"""
        return f"objects/sha256/{sha256[:2]}/{sha256}"

    def put_object(self, data: bytes) -> str:
        """Store bytes under their SHA-256 (idempotent: same bytes, same key); returns the key."""
        key = self.object_key(hashlib.sha256(data).hexdigest())
        if is_s3(self.root):
            location = parse_s3(self.root)
            _s3_client().put_object(
                Bucket=location.bucket, Key=f"{location.prefix}/{key}".lstrip("/"), Body=data
            )
            return key
        path = Path(self.root) / key
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".partial-{uuid.uuid4().hex}")
            partial.write_bytes(data)
            partial.replace(path)  # atomic: a crash never leaves a half-written object
        return key

    def get_object(self, key: str) -> bytes:
        if is_s3(self.root):
            location = parse_s3(self.root)
            target = f"{location.prefix}/{key}".lstrip("/")
            return _s3_client().get_object(Bucket=location.bucket, Key=target)["Body"].read()
        return (Path(self.root) / key).read_bytes()

    def replace_partitions(
        self,
        name: str,
        rows: pl.DataFrame,
        *,
        partition_column: str,
        values: Sequence[str],
        commit_info: dict[str, str],
    ) -> None:
        """Atomically swap some partitions' rows for `rows` (one commit, idempotent).

        `values` are partition keys we generated (dates), never user input.
        """
        listed = ", ".join(f"'{value}'" for value in values)
        arrow = rows.to_arrow()

        def attempt() -> None:
            if self.open(name) is None:
                self._create(name, rows, commit_info, [partition_column])
                return
            write_deltalake(
                self.table_uri(name),
                arrow,
                mode="overwrite",
                predicate=f"{partition_column} IN ({listed})",
                partition_by=[partition_column],
                storage_options=self.storage_options(),
                commit_properties=_commit(commit_info),
            )

        _retry_conflicts(attempt)

    def _merger(
        self,
        name: str,
        rows: pl.DataFrame,
        key: Sequence[str],
        commit_info: dict[str, str],
        *,
        merge_schema: bool = False,
    ) -> TableMerger:
        """A merge of `rows` (alias s) into the latest table (alias t) on the key columns."""
        return self.open(name).merge(  # type: ignore[union-attr]
            rows.to_arrow(),
            predicate=" AND ".join(f"t.{column} = s.{column}" for column in key),
            source_alias="s",
            target_alias="t",
            merge_schema=merge_schema,
            commit_properties=_commit(commit_info),
        )

    def _create(
        self,
        name: str,
        rows: pl.DataFrame,
        commit_info: dict[str, str],
        partition_by: Sequence[str] | None,
    ) -> None:
        if not is_s3(self.root):
            os.makedirs(self.table_uri(name), exist_ok=True)
        write_deltalake(
            self.table_uri(name),
            rows.to_arrow(),
            mode="error",
            partition_by=list(partition_by) if partition_by else None,
            storage_options=self.storage_options(),
            commit_properties=_commit(commit_info),
        )

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
        return sorted(p.name for p in root.iterdir() if (p / "_delta_log").is_dir())


PREVIEW_ROWS = 5
PREVIEW_TEXT = 40
PREVIEW_ITEMS = 3


def table_metadata(lake: LakeResource, name: str, rows: int, computed: int) -> dict:
    """What every materialization tells the UI: where the table is, its version, its size,
    its column schema and a preview of its first rows (when the table exists)."""
    table = lake.open(name)
    metadata: dict = {
        "uri": dg.MetadataValue.path(lake.table_uri(name)),
        "delta_version": None if table is None else table.version(),
        "dagster/row_count": rows,
        "rows_computed": computed,
    }
    if table is not None:
        dataset = table.to_pyarrow_dataset()
        metadata["dagster/column_schema"] = dg.TableSchema(
            columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in dataset.schema]
        )
        metadata["preview"] = dg.MetadataValue.md(preview_markdown(dataset.head(PREVIEW_ROWS)))
    return metadata


def preview_markdown(rows: pa.Table) -> str:
    """A few rows as a markdown table, every cell short: bytes as sizes, text and lists cut."""
    if rows.num_columns == 0:
        return "_no columns_"
    header = "| " + " | ".join(_cell(name) for name in rows.column_names) + " |"
    rule = "|" + "---|" * rows.num_columns
    lines = [
        "| " + " | ".join(_cell(_preview_value(value)) for value in row.values()) + " |"
        for row in rows.to_pylist()
    ]
    return "\n".join([header, rule, *lines] if lines else [header, rule, "", "_no rows_"])


def _preview_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        shown = ", ".join(_preview_value(item) for item in value[:PREVIEW_ITEMS])
        more = f", … ({len(value)} items)" if len(value) > PREVIEW_ITEMS else ""
        return f"[{shown}{more}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_preview_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _cell(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > PREVIEW_TEXT:
        text = text[: PREVIEW_TEXT - 1] + "…"
    return text.replace("|", "\\|")


def commit_info_for(context: dg.OpExecutionContext | dg.AssetExecutionContext) -> dict[str, str]:
    """What every commit records: which Dagster run and asset wrote it."""
    info = {"dagster_run_id": context.run_id}
    if context.has_assets_def:
        info["dagster_asset"] = context.asset_key.to_user_string()
    return info


def _s3_client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


def _commit(info: dict[str, str]) -> CommitProperties:
    return CommitProperties(custom_metadata=dict(info))


def _retry_conflicts(attempt: Callable[[], T]) -> T:
    """Optimistic concurrency: on a conflicting commit, redo the write on a fresh snapshot."""
    delay = 0.05
    for remaining in range(COMMIT_RETRIES, -1, -1):
        try:
            return attempt()
        except (CommitFailedError, DeltaError) as exc:
            if remaining == 0 or not _is_conflict(exc):
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")


def _is_conflict(exc: Exception) -> bool:
    if isinstance(exc, CommitFailedError):
        return True
    text = str(exc).lower()
    return "already exists" in text or "conflict" in text or "concurrent" in text

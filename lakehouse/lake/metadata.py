"""Dagster metadata glue: what a commit records of the run that made it, and what a
materialization shows in the UI about the table it wrote."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import polars as pl
import polars.selectors
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from lakehouse.lake.blobs import blob_uri
from lakehouse.lake.tables import column_description

if TYPE_CHECKING:
    from lakehouse.lake.resource import LakeResource

PREVIEW_ROWS = 5
PREVIEW_TEXT = 40
PREVIEW_ITEMS = 3


def commit_info_for(context: dg.OpExecutionContext | dg.AssetExecutionContext) -> dict[str, str]:
    """What every commit records: which Dagster run and asset wrote it."""
    info = {"dagster_run_id": context.run_id}
    if context.has_assets_def:
        info["dagster_asset"] = context.asset_key.to_user_string()
    return info


def table_metadata(lake: LakeResource, name: str, rows: int, computed: int) -> dict:
    """What every materialization tells the UI: where the table is, its version, its size,
    its column schema and a preview of its first rows (when the table exists)."""
    table = lake.open(name)
    metadata: dict = {
        "uri": dg.MetadataValue.path(lake.table_uri(name)),
        "dagster/uri": absolute_uri(lake.table_uri(name)),
        "delta_version": None if table is None else table.version(),
        "dagster/row_count": rows,
        "rows_computed": computed,
    }
    if table is not None:
        dataset = table.to_pyarrow_dataset()
        metadata["dagster/column_schema"] = dg.TableSchema(
            columns=[
                dg.TableColumn(
                    name=f.name, type=str(f.type), description=column_description(name, f.name)
                )
                for f in dataset.schema
            ]
        )
        metadata["preview"] = dg.MetadataValue.md(preview_markdown(preview_rows(dataset)))
    return metadata


def partition_row_count(lake: LakeResource, name: str, days: Sequence[str]) -> dict:
    """`dagster/partition_row_count` when a run covers one day (the value is per
    partition; a run over a range reports one materialization for all of them)."""
    if len(days) != 1:
        return {}
    rows = lake.read(name, columns=["day"], filters=[("day", "=", days[0])])
    return {"dagster/partition_row_count": 0 if rows is None else rows.height}


def object_link(lake: LakeResource, key: str) -> dg.UrlMetadataValue:
    """A stored object (model weights, a picture) as a link the UI can open: an absolute
    `file://` or `s3://` URI, not a key relative to a root nobody sees."""
    return dg.MetadataValue.url(blob_uri(lake.root, key))


def absolute_uri(location: str) -> str:
    """`s3://…` as it is, a local path as an absolute `file://` URI."""
    return location if "://" in location else Path(location).resolve().as_uri()


def preview_rows(dataset: ds.Dataset) -> pa.Table:
    """A few rows of the snapshot's smallest data file, partition columns included.

    `Dataset.head` decodes whole row groups of several files ahead: on
    augmented_tensors (row groups of 18k tensors after compaction) that was 4-9 s
    and 2 GB of RSS for five rows, on every materialization, a no-op included. Even a
    Scanner over one file pre-buffers whole column chunks (85 MB of tensors, 0.5-3 s);
    the file is read page by page instead (a few ms).
    """
    fragments = list(dataset.get_fragments())
    if not fragments:
        return dataset.head(PREVIEW_ROWS)
    sizes = dataset.filesystem.get_file_info([fragment.path for fragment in fragments])
    smallest = min(zip(fragments, sizes, strict=True), key=lambda pair: pair[1].size)[0]
    parquet = pq.ParquetFile(smallest.path, filesystem=dataset.filesystem, pre_buffer=False)
    first = next(parquet.iter_batches(batch_size=PREVIEW_ROWS), None)
    if first is None:
        return dataset.schema.empty_table()
    rows = first.slice(0, PREVIEW_ROWS)
    partition = ds.get_partition_keys(smallest.partition_expression)
    columns = []
    for field in dataset.schema:
        if field.name in rows.schema.names:
            columns.append(rows.column(field.name).cast(field.type))
        else:  # a partition column (from the fragment) or one this file predates
            columns.append(pa.array([partition.get(field.name)] * rows.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=dataset.schema)


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


TABLE_TYPES = {"Int": "int", "UInt": "int", "Float": "float", "String": "string", "Boolean": "bool"}
PLAIN = int | float | bool | str


def table_type(dtype: pl.DataType) -> str:
    """The TableColumn type of a polars dtype (string for anything else)."""
    return next((t for prefix, t in TABLE_TYPES.items() if str(dtype).startswith(prefix)), "string")


def frame_table(frame: pl.DataFrame, digits: int = 3) -> dg.TableMetadataValue:
    """A small frame as a sortable table in the UI (floats rounded for display)."""
    columns = [dg.TableColumn(name, table_type(dtype)) for name, dtype in frame.schema.items()]
    rounded = frame.with_columns(polars.selectors.float().round(digits))
    records = [
        dg.TableRecord(
            {k: v if v is None or isinstance(v, PLAIN) else str(v) for k, v in row.items()}
        )
        for row in rounded.iter_rows(named=True)
    ]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))

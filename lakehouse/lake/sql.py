"""DuckDB connections with the lake's settings, SQL over polars frames, and Delta
snapshots as plain Parquet reads.

One home for the connection config, used by the `duckdb` resource (definitions.py)
and by the plain connections of tests, benchmarks and helpers that are not assets.
No Dagster here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import unquote

import duckdb
import polars as pl
import pyarrow as pa
from deltalake import DeltaTable

MEMORY_LIMIT_VAR = "LAKEHOUSE_DUCKDB_MEMORY_LIMIT"  # e.g. "4GB"; unset: DuckDB's default
THREADS_VAR = "LAKEHOUSE_DUCKDB_THREADS"  # unset: one per core
DUCKDB_CONFIG: dict[str, object] = {
    # the lake never fetches code at query time
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    # Registered Arrow views look like ~1 row to the planner, which then picks the
    # nested-loop ASOF join (quadratic: seconds instead of milliseconds).
    "asof_loop_join_threshold": 0,
}


def connection_config(
    memory_limit: str | None = None, threads: int | str | None = None
) -> dict[str, object]:
    """DUCKDB_CONFIG with a memory limit and a thread count where given (else DuckDB's)."""
    return {
        **DUCKDB_CONFIG,
        **({"memory_limit": memory_limit} if memory_limit else {}),
        **({"threads": int(threads)} if threads else {}),
    }


@contextmanager
def connection(**settings: object) -> Iterator[duckdb.DuckDBPyConnection]:
    """A private in-memory DuckDB with DUCKDB_CONFIG (plus `settings`), closed on exit."""
    conn = duckdb.connect(":memory:", config={**DUCKDB_CONFIG, **settings})
    try:
        yield conn
    finally:
        conn.close()


def run_sql(
    conn: duckdb.DuckDBPyConnection,
    sql: str,
    tables: Mapping[str, pl.DataFrame],
    params: Mapping[str, object] | None = None,
) -> pl.DataFrame:
    """Run `sql` over Arrow views of `tables`, named by their keys; the views are dropped
    after, so a connection shared by several calls holds no frame longer than its query."""
    registered = []
    try:
        for name, frame in tables.items():
            conn.register(name, frame.to_arrow())
            registered.append(name)
        return conn.execute(sql, dict(params or {})).pl()
    finally:
        for name in registered:
            conn.unregister(name)


def cache_immutable_files(conn: duckdb.DuckDBPyConnection) -> None:
    """Let `conn` trust what it cached of a file: for files that never change once written.

    Delta data files are such files (a write adds new files and never rewrites one): their
    footers are parsed once per connection instead of once per query, and DuckDB uses what
    it cached of a file without opening and `stat`-ing it again to check that it did not
    change (otherwise two opens and ~17 `fstat`s a file a query: 60 daily files of a
    one-week scan on a locked connection spent more time in these than in reading).
    """
    conn.execute("SET parquet_metadata_cache = true")
    conn.execute("SET validate_external_file_cache = 'NO_VALIDATION'")


# Delta primitive types as DuckDB types, for partition values (strings in the log)
DELTA_TO_DUCKDB = {
    "string": "VARCHAR",
    "long": "BIGINT",
    "integer": "INTEGER",
    "short": "SMALLINT",
    "byte": "TINYINT",
    "boolean": "BOOLEAN",
    "double": "DOUBLE",
    "float": "FLOAT",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
    "timestamp_ntz": "TIMESTAMP",
    "binary": "BLOB",
}


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def parquet_snapshot_sql(table: DeltaTable, table_uri: str, *, hive: bool = True) -> str | None:
    """A SELECT over one Delta snapshot's data files with DuckDB's Parquet reader, or None
    where only a Delta reader gives the right rows.

    The snapshot's file list and partition values come from the Delta log (the
    `DeltaTable` already read it). Where every file sits in `name=value` folders that
    match its partition values in the log (deltalake writes them so), one Parquet scan
    reads them all and takes the partition columns from the folders (`hive`; a filter
    on them skips files); otherwise each group of files gets its partition values as
    typed constants, in a UNION ALL. A filter on a data column uses the files' own
    statistics either way. Only plain tables qualify: reader protocol 1 (no deletion
    vectors, no column mapping: those need reader 2 or 3).
    """
    protocol = table.protocol()
    mapping = table.metadata().configuration.get("delta.columnMapping.mode", "none")
    if protocol.min_reader_version != 1 or protocol.reader_features or mapping != "none":
        return None
    fields = table.schema().fields
    partitions = list(table.metadata().partition_columns)
    types = {field.name: getattr(field.type, "type", None) for field in fields}
    if any(types[name] not in DELTA_TO_DUCKDB for name in partitions):
        return None
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return None
    paths = [absolute_file(table_uri, path) for path in actions.column("path").to_pylist()]
    uniform = every_file_has_every_column(actions, fields, partitions)
    options = "" if uniform else ", union_by_name = true"
    values = [actions.column(f"partition.{name}").to_pylist() for name in partitions]
    groups: dict[tuple[object, ...], list[str]] = {}
    for path, key in zip(
        paths, zip(*values, strict=True) if partitions else [()] * len(paths), strict=True
    ):
        groups.setdefault(tuple(key), []).append(path)
    if (
        hive
        and partitions
        and all(hive_path(path, partitions, key) for key, files in groups.items() for path in files)
    ):
        hive_types = ", ".join(
            f"{sql_literal(name)}: {sql_literal(DELTA_TO_DUCKDB[types[name]])}"
            for name in partitions
        )
        listing = ", ".join(sql_literal(file) for file in paths)
        columns = ", ".join(sql_name(f.name) for f in fields)
        return (
            f"SELECT {columns} FROM read_parquet([{listing}]{options}, "  # noqa: S608
            f"hive_partitioning = true, hive_types = {{{hive_types}}})"
        )
    selects = []
    for key, files in sorted(groups.items(), key=lambda item: str(item[0])):
        constants = dict(zip(partitions, key, strict=True))
        columns = [
            constant_column(f.name, constants[f.name], types[f.name])
            if f.name in constants
            else sql_name(f.name)
            for f in fields
        ]
        listing = ", ".join(sql_literal(file) for file in files)
        selects.append(
            f"SELECT {', '.join(columns)} FROM read_parquet([{listing}]{options})"  # noqa: S608
        )
    return "\nUNION ALL\n".join(selects)


def every_file_has_every_column(actions: pa.Table, fields: list, partitions: list[str]) -> bool:
    """Whether the log's statistics show every data column in every file.

    Then a plain multi-file scan reads the snapshot. Otherwise (a file written before a
    column was added, or a file without statistics) `union_by_name` fills the missing
    columns with NULL, at the price of reading every file's schema before each query
    (15 % of a selective scan over 60 daily files).
    """
    for field in fields:
        if field.name in partitions:
            continue
        counts = f"null_count.{field.name}"
        if counts not in actions.column_names or actions.column(counts).null_count:
            return False
    return True


def hive_path(path: str, partitions: list[str], values: tuple[object, ...]) -> bool:
    """Whether `path` names each partition value the log gives, as `name=value` folders."""
    folders = path.split("/")[-1 - len(partitions) : -1]
    return None not in values and folders == [
        f"{name}={value}" for name, value in zip(partitions, values, strict=True)
    ]


def constant_column(name: str, value: object, delta_type: str) -> str:
    """A partition column as a typed constant (its value as the log writes it)."""
    literal = "NULL" if value is None else sql_literal(str(value))
    return f"CAST({literal} AS {DELTA_TO_DUCKDB[delta_type]}) AS {sql_name(name)}"


def absolute_file(table_uri: str, path: str) -> str:
    """A data file's location: log paths are relative to the table and URL-encoded."""
    if "://" in path or path.startswith("/"):
        return unquote(path)
    return f"{table_uri.rstrip('/')}/{unquote(path)}"

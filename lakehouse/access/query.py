"""Read-only SQL over the lake: DuckDB views over each pinned Delta snapshot, with time travel.

`connect()` hands out an in-memory DuckDB connection holding one view per lake
table (each over the table's snapshot at connect time, or a pinned version: its
data files read with DuckDB's Parquet reader where the protocol allows, else
through the Delta extension),
then locks it down (no files outside the lake, no network, no extension
loading, no configuration changes). DuckDB still lets a locked connection write
a file inside the lake or create secrets, so SQL from anyone but the caller's
own code goes through `run_read_query`, which accepts a single SELECT that reads
only the views.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import duckdb

from lakehouse import settings
from lakehouse.access.releases import ReleaseError, find_release
from lakehouse.lake import LakeResource
from lakehouse.lake.sql import cache_immutable_files, parquet_snapshot_sql
from lakehouse.lake.tables import TABLES, natural_key

# Table functions that compute rows rather than read files, secrets or other databases.
SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})

HISTORY_COLUMNS = ("version", "timestamp", "operation", "dagster_asset", "dagster_run_id")


class QueryError(Exception):
    """A query the lake cannot answer (unknown table, version or natural key); says why."""


class QueryRefused(QueryError):
    """SQL that is not a single read of the lake's views: nothing of it was run."""


def connect(
    lake: str | None = None,
    versions: Mapping[str, int] | None = None,
    release: str | None = None,
) -> duckdb.DuckDBPyConnection:
    """A locked-down DuckDB connection with a view per lake table (`versions` pins some).

    With `release`, exactly the tables of that named release, each at its
    recorded version: the lake as it was when the release was made.
    Tables starting with `_` are the lake's bookkeeping and get no view.
    """
    resource = LakeResource(root=lake or settings.lake_uri())
    names = [name for name in resource.table_names() if not name.startswith("_")]
    pins = dict(versions or {})
    if release is not None:
        if pins:
            raise QueryError("pin either a release or table versions, not both")
        try:
            pins = find_release(resource, release).versions
        except ReleaseError as exc:
            raise QueryError(str(exc)) from exc
        pins = {name: version for name, version in pins.items() if not name.startswith("_")}
        names = sorted(pins)
    unknown = sorted(set(pins) - set(names))
    if unknown:
        raise QueryError(
            f"no table {', '.join(unknown)} under {resource.root} (tables: {', '.join(names)})"
        )
    for name, version in pins.items():
        check_version(resource, name, version)
    return locked_connection(resource, {name: (name, pins.get(name)) for name in names})


def locked_connection(
    lake: LakeResource, views: Mapping[str, tuple[str, int | None]]
) -> duckdb.DuckDBPyConnection:
    """A connection holding `views` (view name -> table, version), then locked down."""
    conn = duckdb.connect(
        ":memory:",
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
    )
    cache_immutable_files(conn)  # the views read Delta data files only
    conn.execute(f"LOAD {sql_string(extension_path('delta'))}")
    if settings.is_s3(lake.root):
        conn.execute(f"LOAD {sql_string(extension_path('httpfs'))}")
        conn.execute(s3_secret_sql())
    for view, (table, version) in views.items():
        if not parquet_view(conn, lake, view, table, version):
            snapshot = sql_identifier(f"_delta_{view}")
            conn.execute(attach_sql(lake, table, version, snapshot))
            conn.execute(f"CREATE VIEW {sql_identifier(view)} AS SELECT * FROM {snapshot}")  # noqa: S608
    lock(conn, lake)
    return conn


def lock(conn: duckdb.DuckDBPyConnection, lake: LakeResource) -> None:
    """No files outside the lake, no network, no extension loading, no configuration changes.

    DuckDB resolves each path it checks on a locked connection (a `readlink` per folder
    of the path), and binding a view checks each of its files: on a short query over
    many files that is a measurable share of the time (`bench.query` shows the same
    files read unlocked and locked).
    """
    conn.execute(f"SET allowed_directories=[{sql_string(lake_prefix(lake))}]")
    conn.execute("SET enable_external_access=false")
    conn.execute("SET lock_configuration=true")


def parquet_view(
    conn: duckdb.DuckDBPyConnection,
    lake: LakeResource,
    view: str,
    table: str,
    version: int | None,
) -> bool:
    """Create `view` over the snapshot's Parquet files (`parquet_snapshot_sql`); False where
    the table needs the Delta reader (deletion vectors, column mapping, no files, a column
    no file holds yet), and `delta_scan` answers instead.

    DuckDB's delta extension 1.5.5 passes no timestamp predicate to the Delta kernel
    (a week's filter on `ts` opened all 60 daily files); the Parquet reader skips
    files and row groups by their statistics itself.
    """
    delta = lake.open(table, version)
    select = None if delta is None else parquet_snapshot_sql(delta, lake.table_uri(table))
    if select is None:
        return False
    try:
        conn.execute(f"CREATE VIEW {sql_identifier(view)} AS {select}")
    except duckdb.BinderException:
        return False
    return True


def extension_path(name: str) -> str:
    """The extension file shipped in the `duckdb-extension-<name>` wheel (no download)."""
    package = f"duckdb_extension_{name}"
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise QueryError(f"the {package} package is not installed")
    path = (
        Path(spec.origin).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / f"{name}.duckdb_extension"
    )
    if not path.is_file():
        raise QueryError(f"{path} is missing: {package} does not match duckdb {duckdb.__version__}")
    return str(path)


def s3_secret_sql() -> str:
    """CREATE SECRET from the AWS_* variables: delta_scan reads no environment itself."""
    options = settings.s3_storage_options()
    fields = {"TYPE": "S3", "REGION": sql_string(options["AWS_REGION"])}
    if "AWS_ACCESS_KEY_ID" in options:
        fields["KEY_ID"] = sql_string(options["AWS_ACCESS_KEY_ID"])
        fields["SECRET"] = sql_string(options.get("AWS_SECRET_ACCESS_KEY", ""))
    if "AWS_SESSION_TOKEN" in options:
        fields["SESSION_TOKEN"] = sql_string(options["AWS_SESSION_TOKEN"])
    if "AWS_ENDPOINT_URL" in options:
        endpoint = urlparse(options["AWS_ENDPOINT_URL"])
        fields["ENDPOINT"] = sql_string(endpoint.netloc)
        fields["URL_STYLE"] = "'path'"
        fields["USE_SSL"] = "true" if endpoint.scheme == "https" else "false"
    return f"CREATE SECRET lake ({', '.join(f'{k} {v}' for k, v in fields.items())})"


def lake_prefix(lake: LakeResource) -> str:
    """The lake root as DuckDB's allowed_directories wants it: absolute, ending in `/`."""
    root = lake.root if settings.is_s3(lake.root) else str(Path(lake.root).resolve())
    return root.rstrip("/") + "/"


def attach_sql(lake: LakeResource, table: str, version: int | None, alias: str) -> str:
    """ATTACH one table as `alias`, pinned to its snapshot of now (or to `version`).

    A pinned snapshot reads the Delta log once, at connect(), not once per query:
    the views answer as of that moment, like a database transaction, and cost
    about what the same Parquet files cost without a log.
    """
    pin = "" if version is None else f", VERSION {int(version)}"
    return f"ATTACH {sql_string(lake.table_uri(table))} AS {alias} (TYPE delta, PIN_SNAPSHOT{pin})"


def check_version(lake: LakeResource, table: str, version: int) -> None:
    """Fail with the table's version range unless `version` is one of them."""
    latest = lake.version(table)
    if latest is None:
        raise QueryError(f"no table {table} under {lake.root}")
    if not 0 <= version <= latest:
        raise QueryError(f"{table} has versions 0..{latest}, not {version}")


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def run_read_query(conn: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation:
    """Run `sql` only if it is one SELECT that reads nothing but views and computed rows."""
    statements = conn.extract_statements(sql)
    if len(statements) != 1:
        raise QueryRefused(f"expected exactly one statement, got {len(statements)}")
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT:
        raise QueryRefused(
            f"only SELECT queries are allowed, not {statement.type.name}: {statement.query.strip()}"
        )
    refuse_file_reads(syntax_tree(conn, statement.query))
    return conn.sql(statement.query)


def syntax_tree(conn: duckdb.DuckDBPyConnection, sql: str) -> dict:
    """DuckDB's own parse of one SELECT, as JSON (so the check sees what DuckDB will run)."""
    tree = json.loads(conn.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    if tree.get("error"):
        raise QueryRefused(f"cannot check this query: {tree.get('error_message')}")
    return tree


def refuse_file_reads(tree: dict) -> None:
    """Refuse table functions that read files (read_csv, delta_scan, glob…) and file names
    in FROM (DuckDB's replacement scans read `FROM 'x.csv'` as a file)."""
    for node in syntax_nodes(tree):
        kind = node.get("type")
        if kind == "TABLE_FUNCTION":
            name = node["function"]["function_name"].lower()
            if name not in SAFE_TABLE_FUNCTIONS:
                raise QueryRefused(
                    f"table function {name}() is not allowed: query the lake's views instead"
                )
        elif kind in ("BASE_TABLE", "SHOW_REF") and any(c in node["table_name"] for c in "./\\:"):
            raise QueryRefused(
                f"reading {node['table_name']!r} is not allowed: query the lake's views instead"
            )


def syntax_nodes(tree: object) -> Iterator[dict]:
    """Every JSON object in a syntax tree, depth first."""
    if isinstance(tree, dict):
        yield tree
        for value in tree.values():
            yield from syntax_nodes(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from syntax_nodes(value)


def table_history(table: str, lake: str | None = None) -> list[dict[str, object]]:
    """Every version of a table, newest first: when, which operation, which Dagster run."""
    resource = LakeResource(root=lake or settings.lake_uri())
    delta = resource.open(table)
    if delta is None:
        raise QueryError(f"no table {table} under {resource.root}")
    return [
        {
            "version": commit["version"],
            "timestamp": datetime.fromtimestamp(commit["timestamp"] / 1000, UTC),
            "operation": commit.get("operation"),
            "dagster_asset": commit.get("dagster_asset"),
            "dagster_run_id": commit.get("dagster_run_id"),
        }
        for commit in delta.history()
    ]


def table_diff(
    table: str, before: int, after: int, lake: str | None = None
) -> duckdb.DuckDBPyRelation:
    """Rows added, removed and changed from version `before` to `after`, by natural key.

    One row per difference: `change`, the row (the new one; the old one when
    removed) and, for changed rows, the columns whose values differ.
    """
    keys = natural_key(table)
    if keys is None:
        raise QueryError(f"no natural key known for {table} (known: {', '.join(TABLES)})")
    resource = LakeResource(root=lake or settings.lake_uri())
    for version in (before, after):
        check_version(resource, table, version)
    conn = locked_connection(resource, {"before": (table, before), "after": (table, after)})
    return conn.sql(diff_sql(keys, conn.table("before").columns, conn.table("after").columns))


def diff_sql(keys: tuple[str, ...], before: list[str], after: list[str]) -> str:
    """SQL comparing views `before` and `after` on `keys`, over the columns they share."""
    using = ", ".join(sql_identifier(k) for k in keys)
    shared = [c for c in after if c in before and c not in keys]
    differs = [
        f"CASE WHEN b.{sql_identifier(c)} IS DISTINCT FROM a.{sql_identifier(c)} "
        f"THEN {sql_string(c)} END"
        for c in shared
    ]
    changed_columns = f"list_filter([{', '.join(differs)}]::VARCHAR[], c -> c IS NOT NULL)"
    order = ", ".join(["change", *(sql_identifier(k) for k in keys)])
    return f"""
        SELECT 'added' AS change, * FROM after ANTI JOIN before USING ({using})
        UNION ALL BY NAME
        SELECT 'removed' AS change, * FROM before ANTI JOIN after USING ({using})
        UNION ALL BY NAME
        SELECT * FROM (
            SELECT 'changed' AS change, a.*, {changed_columns} AS changed_columns
            FROM after AS a JOIN before AS b USING ({using})
        ) WHERE len(changed_columns) > 0
        ORDER BY {order}
    """  # noqa: S608 (names are quoted by sql_identifier / sql_string)


DIFF_COLUMNS = ("table", "version_a", "version_b", "rows_added", "rows_removed", "rows_changed")


def release_diff(
    lake: LakeResource,
    before: str,
    after: str,
    progress: Callable[[str, int], object] | None = None,
) -> list[dict[str, object]]:
    """Per table: its version in each release and the rows added, removed and changed
    between them (by natural key, via `table_diff`; None where it has none).
    `progress(table, tables)` is called before each table is compared."""
    a, b = find_release(lake, before), find_release(lake, after)
    rows = []
    tables = sorted(a.versions.keys() | b.versions.keys())
    for table in tables:
        if progress is not None:
            progress(table, len(tables))
        va, vb = a.versions.get(table), b.versions.get(table)
        counts: dict[str, int | None] = dict.fromkeys(("added", "removed", "changed"))
        if va is not None and vb is not None and natural_key(table) is not None:
            counts = dict.fromkeys(counts, 0)
            if va != vb:
                changes = table_diff(table, va, vb, lake=lake.root).aggregate(
                    "change, count(*)::BIGINT"
                )
                counts.update(dict(changes.fetchall()))
        elif va is None and vb is not None:
            counts = {"added": lake.open(table, vb).count(), "removed": 0, "changed": 0}  # type: ignore[union-attr]
        elif vb is None and va is not None:
            counts = {"added": 0, "removed": lake.open(table, va).count(), "changed": 0}  # type: ignore[union-attr]
        rows.append(
            dict(
                zip(
                    DIFF_COLUMNS,
                    (table, va, vb, counts["added"], counts["removed"], counts["changed"]),
                    strict=True,
                )
            )
        )
    return rows

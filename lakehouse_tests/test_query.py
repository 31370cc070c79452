"""DuckDB over the lake: views, time travel, diffs, the read-only guard and the shell."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import nbformat
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from nbclient import NotebookClient

from lakehouse.access.query import (
    QueryError,
    QueryRefused,
    connect,
    extension_path,
    run_read_query,
    table_diff,
    table_history,
)
from lakehouse.lake import LakeResource
from lakehouse.lake.sql import parquet_snapshot_sql
from lakehouse.lake.tables import TABLES
from lakehouse_tests.conftest import Lakehouse
from lakehouse_tests.delta_counts import left_unchanged
from lakehouse_tests.servers.s3 import aws_settings

pytestmark = pytest.mark.query

LAKEHOUSE = Path(sys.executable).parent / "lakehouse"
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "explore.ipynb"


@dataclass(frozen=True)
class BuiltLake:
    root: Path
    run_id: str


@pytest.fixture(scope="module")
def built_lake(
    tmp_path_factory: pytest.TempPathFactory, pristine_world: Path
) -> Iterator[BuiltLake]:
    """The raw layer materialized once from the synthetic world; tests only read it (checked
    when the module ends: a test that writes uses lake_copy)."""
    house = Lakehouse(sources=pristine_world, lake=tmp_path_factory.mktemp("query") / "lake")
    result = house.materialize()
    with left_unchanged(house.lake_resource, "the module's built lake"):
        yield BuiltLake(house.lake, result.run_id)


@pytest.fixture
def lake_copy(built_lake: BuiltLake, tmp_path: Path) -> Path:
    """A private copy of the built lake, for tests that write new table versions."""
    root = tmp_path / "lake"
    shutil.copytree(built_lake.root, root)
    return root


def files_under(*roots: Path) -> set[Path]:
    return {path for root in roots for path in root.rglob("*")}


def cli(*args: str, lake: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAKEHOUSE_LAKE": str(lake)}
    return subprocess.run(
        [str(LAKEHOUSE), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_view_per_table_with_its_delta_row_count(built_lake: BuiltLake) -> None:
    lake = LakeResource(root=str(built_lake.root))
    conn = connect(str(built_lake.root))

    views = {
        row[0]
        for row in conn.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }

    tables = [name for name in lake.table_names() if not name.startswith("_")]
    assert views == set(tables)
    assert {"raw_objects", "raw_events", "quarantine", "raw_users"} <= views
    for name in tables:
        (count,) = conn.sql(f'SELECT count(*) FROM "{name}"').fetchone()
        assert count == lake.row_count(name) > 0, name


def test_connect_reads_the_lake_from_the_environment(
    built_lake: BuiltLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_LAKE", str(built_lake.root))
    (count,) = connect().sql("SELECT count(*) FROM raw_users").fetchone()
    assert count == LakeResource(root=str(built_lake.root)).row_count("raw_users")


def test_versions_pin_a_view_to_an_older_table_version(lake_copy: Path) -> None:
    table = DeltaTable(str(lake_copy / "raw_events"))
    old_version, old_count = table.version(), table.count()
    extra = (
        pl.from_arrow(table.to_pyarrow_table())
        .head(5)
        .with_columns(event_id=pl.col("event_id") + "-copy")
    )
    write_deltalake(table, extra.to_arrow(), mode="append")

    (pinned,) = (
        connect(str(lake_copy), versions={"raw_events": old_version})
        .sql("SELECT count(*) FROM raw_events")
        .fetchone()
    )
    (latest,) = connect(str(lake_copy)).sql("SELECT count(*) FROM raw_events").fetchone()

    assert (pinned, latest) == (old_count, old_count + 5)
    shell = cli(
        "sql",
        "SELECT count(*) AS n FROM raw_events",
        "--version",
        f"raw_events={old_version}",
        "--format",
        "json",
        lake=lake_copy,
    )
    assert shell.returncode == 0, shell.stderr
    assert json.loads(shell.stdout) == [{"n": old_count}]


def test_unknown_tables_and_versions_are_clear_errors(built_lake: BuiltLake) -> None:
    latest = LakeResource(root=str(built_lake.root)).version("raw_users")
    with pytest.raises(QueryError, match="no table nope"):
        connect(str(built_lake.root), versions={"nope": 0})
    with pytest.raises(QueryError, match=f"raw_users has versions 0..{latest}, not 99"):
        connect(str(built_lake.root), versions={"raw_users": 99})
    with pytest.raises(QueryError, match="no natural key"):
        table_diff("raw_nope", 0, 1, lake=str(built_lake.root))


def test_diff_finds_exactly_the_rows_changed_between_versions(lake_copy: Path) -> None:
    table = DeltaTable(str(lake_copy / "raw_users"))
    before = table.version()
    users = pl.from_arrow(table.to_pyarrow_table()).sort("user_id")
    first, second, gone = users["user_id"][:3]
    new_id = users["user_id"].max() + 100
    changes = pl.concat(
        [
            users.filter(pl.col("user_id").is_in([first, second])).with_columns(
                home_city=pl.lit("Atlantis")
            ),
            users.head(1).with_columns(user_id=pl.lit(new_id, users["user_id"].dtype)),
        ]
    )
    (
        table.merge(
            changes.to_arrow(),
            predicate="t.user_id = s.user_id",
            source_alias="s",
            target_alias="t",
        )
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )
    table.delete(f"user_id = {gone}")
    after = table.version()

    diff = table_diff("raw_users", before, after, lake=str(lake_copy))
    rows = {
        (change, user_id, city, tuple(columns or ()))
        for change, user_id, city, columns in diff.select(
            "change", "user_id", "home_city", "changed_columns"
        ).fetchall()
    }

    first_city = users["home_city"][0]
    gone_city = users.filter(pl.col("user_id") == gone)["home_city"][0]
    assert rows == {
        ("changed", first, "Atlantis", ("home_city",)),
        ("changed", second, "Atlantis", ("home_city",)),
        ("removed", gone, gone_city, ()),
        ("added", new_id, first_city, ()),
    }
    assert table_diff("raw_users", after, after, lake=str(lake_copy)).fetchall() == []

    shell = cli("diff", "raw_users", str(before), str(after), "--format", "json", lake=lake_copy)
    assert shell.returncode == 0, shell.stderr
    assert sorted((r["change"], r["user_id"]) for r in json.loads(shell.stdout)) == sorted(
        [("added", new_id), ("changed", first), ("changed", second), ("removed", gone)]
    )


def test_every_natural_key_is_unique_in_the_built_lake(built_lake: BuiltLake) -> None:
    lake = LakeResource(root=str(built_lake.root))
    for name in lake.table_names():
        rows = lake.read(name)
        assert rows.select(TABLES[name].key).is_duplicated().sum() == 0, name


# Each kind of statement the guard must refuse, by what it tries to do.
REFUSED = {
    "create": "CREATE TABLE t AS SELECT * FROM raw_users",
    "create view": "CREATE VIEW v AS SELECT 1",
    "create secret": "CREATE SECRET s (TYPE S3, KEY_ID 'a', SECRET 'b')",
    "insert": "INSERT INTO raw_users SELECT * FROM raw_users",
    "drop": "DROP VIEW raw_users",
    "copy into the lake": "COPY (SELECT * FROM raw_users) TO '{lake}/leak.csv'",
    "copy outside": "COPY (SELECT * FROM raw_users) TO '{outside}/leak.parquet'",
    "attach": "ATTACH '{outside}/other.duckdb' AS other",
    "install": "INSTALL httpfs",
    "load": "LOAD '{httpfs}'",
    "set": "SET threads = 1",
    "pragma": "PRAGMA enable_profiling",
    "call": "CALL duckdb_settings()",
    "export": "EXPORT DATABASE '{outside}/dump'",
    "two statements": "SELECT 1; DROP VIEW raw_users",
    "read_csv": "SELECT * FROM read_csv('{outside}/users.csv')",
    "read_parquet in the lake": "SELECT * FROM read_parquet('{data_file}')",
    "file in FROM": "SELECT * FROM '{data_file}'",
    "delta_scan": "SELECT * FROM delta_scan('{lake}/_object_hashes')",
    "glob": "SELECT * FROM glob('{lake}/*')",
    "read_text in a subquery": "SELECT * FROM raw_users WHERE user_id IN "
    "(SELECT length(content) FROM read_text('{outside}/users.csv'))",
    "query()": "SELECT * FROM query('SELECT 1')",
    "secrets": "SELECT * FROM duckdb_secrets()",
}


@pytest.mark.parametrize("kind", list(REFUSED))
def test_the_guard_refuses_everything_but_a_read(
    built_lake: BuiltLake, tmp_path: Path, kind: str
) -> None:
    (tmp_path / "users.csv").write_text("user_id\n1\n")
    statement = REFUSED[kind].format(
        lake=built_lake.root,
        outside=tmp_path,
        data_file=next((built_lake.root / "raw_users").glob("*.parquet")),
        httpfs=extension_path("httpfs"),
    )
    conn = connect(str(built_lake.root))
    files = files_under(built_lake.root, tmp_path)

    with pytest.raises(QueryRefused):
        run_read_query(conn, statement).fetchall()

    assert files_under(built_lake.root, tmp_path) == files
    assert conn.sql("SELECT count(*) FROM raw_users").fetchone()[0] > 0


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT user_id, count(*) FROM raw_events GROUP BY ALL ORDER BY 1",
        "WITH u AS (SELECT * FROM raw_users) FROM u JOIN raw_photos USING (user_id)",
        "DESCRIBE raw_events",
        "SHOW TABLES",
        "SUMMARIZE raw_users",
        "SELECT * FROM range(3)",
        "SELECT table_name FROM information_schema.tables",
    ],
)
def test_the_guard_lets_reads_through(built_lake: BuiltLake, statement: str) -> None:
    assert run_read_query(connect(str(built_lake.root)), statement).fetchall()


def test_the_locked_connection_reads_no_other_file(built_lake: BuiltLake, tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_text("user_id\n1\n")
    conn = connect(str(built_lake.root))
    with pytest.raises(Exception, match="(?i)permission|disabled|not allowed"):
        conn.sql(f"SELECT * FROM read_csv('{tmp_path}/users.csv')").fetchall()
    with pytest.raises(Exception, match="(?i)lock|disabled|not allowed"):
        conn.execute("SET enable_external_access = true")
    # Delta files are immutable, so their parsed footers are kept for the next query
    assert conn.sql("SELECT current_setting('parquet_metadata_cache')").fetchone() == (True,)


def test_history_names_the_dagster_run_of_each_version(built_lake: BuiltLake) -> None:
    commits = table_history("raw_users", lake=str(built_lake.root))
    assert [c["version"] for c in commits] == list(range(len(commits) - 1, -1, -1))
    assert commits[-1]["dagster_run_id"] == built_lake.run_id
    assert commits[-1]["dagster_asset"] == "raw_users"

    shell = cli("history", "raw_users", lake=built_lake.root)
    assert shell.returncode == 0, shell.stderr
    assert built_lake.run_id in shell.stdout and "raw_users" in shell.stdout


def test_the_shell_answers_reads_and_refuses_writes(built_lake: BuiltLake) -> None:
    count = LakeResource(root=str(built_lake.root)).row_count("raw_objects")

    answered = cli(
        "sql", "select count(*) as n from raw_objects", "--format", "json", lake=built_lake.root
    )
    as_csv = cli(
        "sql", "select count(*) as n from raw_objects", "--format", "csv", lake=built_lake.root
    )
    refused = cli("sql", "CREATE TABLE t AS SELECT 1", lake=built_lake.root)

    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout) == [{"n": count}]
    assert as_csv.stdout == f"n\n{count}\n"
    assert refused.returncode != 0
    assert refused.stderr.startswith(
        "lakehouse: error: only SELECT queries are allowed, not CREATE"
    )
    assert "Traceback" not in refused.stderr


def test_the_console_script_writes_all_its_output_before_its_fast_exit(
    built_lake: BuiltLake,
) -> None:
    """`lakehouse` ends with os._exit (Arrow's threads abort in Python's teardown), so a
    large answer must still arrive whole, through a pipe, and nothing else on stderr."""
    rows = 100_000  # some megabytes: many times a pipe's buffer
    query = f"select a.event_id from raw_events a cross join raw_events b limit {rows}"
    answered = cli("sql", query, "--format", "csv", lake=built_lake.root)
    assert answered.returncode == 0 and answered.stderr == "", answered.stderr
    assert len(answered.stdout.splitlines()) == rows + 1, answered.stdout[-200:]


@pytest.fixture
def s3_lake(monkeypatch: pytest.MonkeyPatch, s3_endpoint: str, s3_bucket: str) -> str:
    """A bucket on the session's S3 server (moto) with one small Delta table in its lake."""
    for name, value in aws_settings(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    lake = LakeResource(root=f"s3://{s3_bucket}/lake")
    rows = pl.DataFrame({"user_id": [1, 2, 3], "home_city": ["Oslo", "Lima", "Pune"]})
    lake.upsert("raw_users", rows, key=["user_id"], commit_info={"dagster_run_id": "r1"})
    lake.upsert("raw_users", rows.head(1), key=["user_id"], commit_info={})
    write_deltalake(
        lake.table_uri("raw_users"),
        pa.table({"user_id": [4], "home_city": ["Rome"]}),
        mode="append",
        storage_options=lake.storage_options(),
    )
    return lake.root


def test_views_and_time_travel_on_an_s3_lake(s3_lake: str) -> None:
    latest = connect(s3_lake).sql("SELECT count(*) FROM raw_users").fetchone()[0]
    pinned = connect(s3_lake, versions={"raw_users": 0}).sql("SELECT count(*) FROM raw_users")
    diff = table_diff("raw_users", 0, 2, lake=s3_lake).select("change", "user_id").fetchall()

    assert (latest, pinned.fetchone()[0]) == (4, 3)
    assert diff == [("added", 4)]


def test_the_notebook_is_stored_without_outputs() -> None:
    code = [
        cell for cell in nbformat.read(NOTEBOOK, as_version=4).cells if cell.cell_type == "code"
    ]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_the_notebook_runs_against_a_lake(
    built_lake: BuiltLake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_LAKE", str(built_lake.root))
    monkeypatch.setenv("MPLBACKEND", "agg")
    notebook = nbformat.read(NOTEBOOK, as_version=4)

    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()

    printed = "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    assert "refused: only SELECT queries are allowed, not COPY" in printed
    # time travel over a table that really has several versions after one run
    assert re.search(r"quarantine: \d+ rows at version 0, \d+ at version [1-9]", printed), printed
    assert not (tmp_path / "users.csv").exists()


def delta_reference(
    conn: duckdb.DuckDBPyConnection, lake: LakeResource, table: str, version: int
) -> str:
    """A view of `table` at `version` through the Delta extension (the reference reader)."""
    alias = f"_ref_{table.strip('_')}_{version}"
    conn.execute(f"ATTACH '{lake.table_uri(table)}' AS {alias} (TYPE delta, VERSION {version})")
    return alias


def same_rows(conn: duckdb.DuckDBPyConnection, left: str, right: str) -> bool:
    """Equal as multisets of rows (EXCEPT ALL both ways), column by column in order."""
    (extra,) = conn.sql(f"SELECT count(*) FROM (FROM {left} EXCEPT ALL FROM {right})").fetchone()
    (missing,) = conn.sql(f"SELECT count(*) FROM (FROM {right} EXCEPT ALL FROM {left})").fetchone()
    return extra == missing == 0


@pytest.mark.speed
def test_parquet_views_hold_delta_scans_rows_for_every_table_and_version(lake_copy: Path) -> None:
    lake = LakeResource(root=str(lake_copy))
    info = {"test": "parquet views"}
    # more versions: a merge that updates rows, a delete, a merge into one day partition
    users = lake.read("raw_users")
    lake.upsert(
        "raw_users", users.head(3).with_columns(pl.col("home_city") + "x"), commit_info=info
    )
    lake.delete_keys("raw_users", users.tail(2).select("user_id"), commit_info=info)
    for offset in (1000, 2000):  # new keys only: each merge adds a file
        newcomers = users.head(2).with_columns(pl.col("user_id") + offset)
        lake.upsert("raw_users", newcomers, commit_info=info)
    events = lake.read("raw_events", filters=[("day", "=", "2026-10-02")])
    lake.upsert("raw_events", events.head(5).with_columns(event=pl.lit("like")), commit_info=info)
    compacted = lake.compact("raw_users", commit_info=info)  # files replaced, rows the same
    assert compacted["files_removed"] > compacted["files_added"] == 1
    # a column added after the first write: the older file lacks it (its rows read NULL)
    widened = str(lake_copy / "widened")
    write_deltalake(widened, pa.table({"id": [1, 2]}))
    write_deltalake(
        widened, pa.table({"id": [3], "note": ["new"]}), mode="append", schema_mode="merge"
    )
    conn = duckdb.connect(":memory:")
    conn.execute(f"LOAD '{extension_path('delta')}'")
    compared = 0
    for table in lake.table_names():
        for version in range(lake.version(table) + 1):  # type: ignore[operator]
            delta = lake.open(table, version)
            if delta.get_add_actions().num_rows == 0:  # type: ignore[union-attr]
                # no data files at this version: delta_scan answers
                assert parquet_snapshot_sql(delta, lake.table_uri(table)) is None  # type: ignore[arg-type]
                continue
            reference = delta_reference(conn, lake, table, version)
            for hive in (True, False):  # one scan over name=value folders; constants per group
                select = parquet_snapshot_sql(delta, lake.table_uri(table), hive=hive)  # type: ignore[arg-type]
                fast = f"_fast_{table.strip('_')}_{version}_{hive}"
                conn.execute(f"CREATE VIEW {fast} AS {select}")
                assert conn.table(fast).columns == conn.table(reference).columns, table
                assert conn.table(fast).types == conn.table(reference).types, table
                assert same_rows(conn, fast, reference), f"{table} v{version} hive={hive}"
                compared += 1
    assert compared >= 2 * (len(lake.table_names()) + 3)
    # union_by_name (every file's schema read before each query) only where a file lacks
    # a column: the widened table's second version, not the tables written in one schema
    assert "union_by_name" in parquet_snapshot_sql(lake.open("widened"), widened)  # type: ignore[arg-type,operator]
    assert "union_by_name" not in parquet_snapshot_sql(lake.open("widened", 0), widened)  # type: ignore[arg-type,operator]
    assert "union_by_name" not in parquet_snapshot_sql(
        lake.open("raw_events"), lake.table_uri("raw_events")
    )  # type: ignore[arg-type,operator]
    assert lake.version("raw_users") >= 3 and lake.version("raw_events") >= 1
    # raw_events is stored by month (its days a plain column): one scan taking `month`
    # from its folders, or one constant `month` per file group
    events_table = lake.open("raw_events")
    assert events_table.metadata().partition_columns == ["month"]  # type: ignore[union-attr]
    assert "hive_partitioning = true" in parquet_snapshot_sql(
        events_table, lake.table_uri("raw_events")
    )  # type: ignore[arg-type,operator]
    assert "CAST('2026-10' AS VARCHAR) AS \"month\"" in parquet_snapshot_sql(
        events_table,  # type: ignore[arg-type]
        lake.table_uri("raw_events"),
        hive=False,
    )


@pytest.mark.speed
def test_a_table_the_parquet_view_cannot_read_is_read_through_delta(lake_copy: Path) -> None:
    """A reader feature (here timestampNtz: protocol 3/7) sends the view to delta_scan,
    with the same rows."""
    rows = pa.table(
        {"id": [1, 2], "seen": pa.array([datetime(2026, 10, 1, 8), None], pa.timestamp("us"))}
    )
    write_deltalake(str(lake_copy / "naive_times"), rows)
    lake = LakeResource(root=str(lake_copy))
    assert lake.open("naive_times").protocol().min_reader_version == 3  # type: ignore[union-attr]
    conn = connect(str(lake_copy))
    (definition,) = conn.sql(
        "SELECT sql FROM duckdb_views() WHERE view_name = 'naive_times'"
    ).fetchone()
    assert "read_parquet" not in definition and "_delta_naive_times" in definition
    assert sorted(conn.sql("SELECT id, seen FROM naive_times").fetchall(), key=str) == sorted(
        [(1, datetime(2026, 10, 1, 8)), (2, None)], key=str
    )
    (events_view,) = conn.sql(
        "SELECT sql FROM duckdb_views() WHERE view_name = 'raw_events'"
    ).fetchone()
    assert "read_parquet" in events_view

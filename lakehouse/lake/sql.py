"""DuckDB connections with the lake's settings, and SQL over polars frames.

One home for the connection config, used by the `duckdb` resource (definitions.py)
and by the plain connections of tests, benchmarks and helpers that are not assets.
No Dagster here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import duckdb
import polars as pl

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

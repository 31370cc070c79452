"""Readers other than ours read the lake as we do.

Every table of the demo lake is read with plain DuckDB (the delta extension loaded by
path, none of our `connect()`), with polars `read_delta` and with `deltalake`; each
gives the row count and a content checksum (DuckDB's `hash` of every row, combined
with `bit_xor`, so row order does not matter) that must equal what `lakehouse sql`
answers. Every table stays at the oldest protocol that serves (reader 1, writer 2, no
table features), so the README's list of readers holds.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from lakehouse.cli.main import main
from lakehouse_tests.conftest import DemoLake

pytestmark = pytest.mark.clients

CHECKSUM = "SELECT count(*) AS n, coalesce(bit_xor(hash(t)), 0) AS h FROM {source} AS t"


def plain_duckdb() -> duckdb.DuckDBPyConnection:
    """DuckDB as any user would open it offline: the delta extension from its wheel."""
    spec = importlib.util.find_spec("duckdb_extension_delta")
    assert spec is not None and spec.origin is not None, "duckdb-extension-delta is installed"
    extension = (
        Path(spec.origin).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / "delta.duckdb_extension"
    )
    conn = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    conn.execute(f"LOAD '{extension}'")
    return conn


def checksum_of(table: pa.Table) -> tuple[int, int]:
    """The same checksum over an Arrow table another reader produced."""
    conn = duckdb.connect()
    conn.register("frame", table)
    return conn.sql(CHECKSUM.format(source="frame")).fetchone()


def test_other_readers_see_every_table_as_lakehouse_sql_does(
    demo_lake: DemoLake, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = demo_lake.lakehouse.lake_resource
    monkeypatch.setenv("LAKEHOUSE_LAKE", str(demo_lake.lakehouse.lake))
    names = [name for name in lake.table_names() if not name.startswith("_")]
    assert {"raw_photos", "images", "training_set", "popularity_model"} <= set(names)
    plain = plain_duckdb()
    for name in names:
        path = lake.table_uri(name)
        capsys.readouterr()
        assert main(["sql", CHECKSUM.format(source=name), "--format", "json"]) == 0, name
        (ours,) = json.loads(capsys.readouterr().out)
        expected = (ours["n"], ours["h"])
        assert expected[0] == lake.row_count(name), name

        source = f"delta_scan('{path}')"
        assert plain.sql(CHECKSUM.format(source=source)).fetchone() == expected, f"duckdb {name}"
        assert checksum_of(pl.read_delta(path).to_arrow()) == expected, f"polars {name}"
        table = DeltaTable(path)
        assert checksum_of(table.to_pyarrow_table()) == expected, f"deltalake {name}"

    for name in lake.table_names():  # the bookkeeping tables (`_…`) too
        protocol = DeltaTable(lake.table_uri(name)).protocol()
        assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2), name
        assert not protocol.reader_features and not protocol.writer_features, name

"""Two writers creating the same table at once: every key lands once, whichever wins.

deltalake lets a lost race to create a table commit as version 1, appending the same
rows a second time; the lake must turn that into a conflict and a merge instead.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import polars as pl
import pytest

from lakehouse import failpoints
from lakehouse.lake import LakeResource

pytestmark = pytest.mark.reliability

INFO = {"dagster_run_id": "test"}
ROUNDS = 12  # a bare create race lost as an append showed up in 8 of 20 rounds
WRITES = ["upsert", "sync_snapshot", "insert_new", "replace_partitions"]


def rows() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "photo_id": list(range(24)),
            "day": ["2026-11-01", "2026-11-02"] * 12,
            "row_sha256": [f"{n:064x}" for n in range(24)],
        }
    )


def write(lake: LakeResource, how: str, name: str) -> None:
    """Write the same 24 rows to table `name` through one of the lake's write paths."""
    if how == "upsert":
        lake.upsert(name, rows(), ["photo_id"], commit_info=INFO)
    elif how == "sync_snapshot":
        lake.sync_snapshot(name, rows(), ["photo_id"], commit_info=INFO)
    elif how == "insert_new":
        lake.insert_new(name, rows(), ["photo_id"], commit_info=INFO)
    else:
        lake.replace_partitions(
            name,
            rows(),
            key=["photo_id"],
            partition_column="day",
            values=["2026-11-01", "2026-11-02"],
            commit_info=INFO,
        )


def race(root: str, start: multiprocessing.synchronize.Barrier) -> None:
    """One of two writers: each round, wait for the other, then create the same table."""
    lake = LakeResource(root=root)
    for round_ in range(ROUNDS):
        start.wait()
        write(lake, WRITES[round_ % len(WRITES)], f"t{round_}")


def assert_once_each(lake: LakeResource, name: str) -> None:
    table = lake.read(name)
    assert table is not None
    assert sorted(table["photo_id"].to_list()) == list(range(24)), name


def test_two_processes_creating_the_same_table_at_once_write_each_key_once(
    tmp_path: Path,
) -> None:
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(2)
    writers = [spawn.Process(target=race, args=(str(tmp_path), start)) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=300)
        assert writer.exitcode == 0
    lake = LakeResource(root=str(tmp_path))
    for round_ in range(ROUNDS):
        assert_once_each(lake, f"t{round_}")


@pytest.mark.parametrize("how", WRITES)
def test_a_table_created_by_another_writer_meanwhile_is_merged_into(
    tmp_path: Path, how: str
) -> None:
    """The other writer creates the table after this one found it missing: this write
    must not fail and must not add the rows again."""
    lake = LakeResource(root=str(tmp_path))
    other = LakeResource(root=str(tmp_path))
    created_meanwhile: list[int | None] = []

    def create_first() -> None:
        write(other, how, "t")
        created_meanwhile.append(other.version("t"))

    with failpoints.on("create/t", create_first):
        write(lake, how, "t")
    assert created_meanwhile == [0]
    assert_once_each(lake, "t")
    if how == "sync_snapshot":  # the same snapshot again: nothing to change, no commit
        assert lake.version("t") == 0

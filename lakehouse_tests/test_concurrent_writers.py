"""Two writers creating the same table at once: every key lands once, whichever wins.

deltalake lets a lost race to create a table commit as version 1, appending the same
rows a second time; the lake must turn that into a conflict and a merge instead.
"""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path

import polars as pl
import pytest

from lakehouse import failpoints
from lakehouse.lake import LakeResource

pytestmark = pytest.mark.reliability

INFO = {"dagster_run_id": "test"}
WRITES = ["upsert", "sync_snapshot", "insert_new", "replace_partitions"]
# each round races for certain (both writers meet at `create/`), so one per write path
ROUNDS = len(WRITES)
MEET_S = 60  # how long a writer waits for the other at the barrier before failing


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


def race(root: str, start: multiprocessing.synchronize.Barrier, log: str) -> None:
    """One of two writers: each round, wait for the other, then create the same table;
    the lake's log (each conflict it retried) goes to `log`.

    Both wait again at `create/<table>`, where each has found the table missing and
    not yet written: both commit a version 0, so one of them meets the conflict."""
    lake_log = logging.getLogger("lakehouse.lake")
    lake_log.addHandler(logging.FileHandler(log))
    lake_log.setLevel(logging.INFO)
    lake = LakeResource(root=root)
    for round_ in range(ROUNDS):
        start.wait(timeout=MEET_S)
        name = f"t{round_}"
        with failpoints.on(f"create/{name}", lambda: start.wait(timeout=MEET_S)):
            write(lake, WRITES[round_ % len(WRITES)], name)


def assert_once_each(lake: LakeResource, name: str) -> None:
    table = lake.read(name)
    assert table is not None
    assert sorted(table["photo_id"].to_list()) == list(range(24)), name


def test_two_processes_creating_the_same_table_at_once_write_each_key_once(
    tmp_path: Path,
) -> None:
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(2)
    logs = [tmp_path / f"writer-{n}.log" for n in (1, 2)]
    root = tmp_path / "lake"
    writers = [spawn.Process(target=race, args=(str(root), start, str(log))) for log in logs]
    for writer in writers:
        writer.start()
    for n, writer in enumerate(writers, 1):
        writer.join(timeout=300)
        assert writer.exitcode == 0, f"writer {n}: exit code {writer.exitcode} (its error above)"
    lake = LakeResource(root=str(root))
    logged = "".join(log.read_text() for log in logs)
    for round_ in range(ROUNDS):
        name = f"t{round_}"
        assert_once_each(lake, name)
        retried = logged.count(f"commit to {name!r} conflicted with a concurrent writer")
        assert retried >= 1, f"{name} ({WRITES[round_]}): no conflict met and retried"


@pytest.mark.parametrize("how", WRITES)
def test_a_table_created_by_another_writer_meanwhile_is_merged_into(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The other writer creates the table after this one found it missing: this write
    meets the conflict, retries, and must not fail nor add the rows again."""
    lake = LakeResource(root=str(tmp_path))
    other = LakeResource(root=str(tmp_path))
    created_meanwhile: list[int | None] = []

    def create_first() -> None:
        write(other, how, "t")
        created_meanwhile.append(other.version("t"))

    with caplog.at_level(logging.INFO, "lakehouse.lake"), failpoints.on("create/t", create_first):
        write(lake, how, "t")
    assert created_meanwhile == [0]
    assert [r.getMessage() for r in caplog.records] == [
        "commit to 't' conflicted with a concurrent writer; retrying on a fresh snapshot "
        "(attempt 2)"
    ]
    assert_once_each(lake, "t")
    if how == "sync_snapshot":  # the same snapshot again: nothing to change, no commit
        assert lake.version("t") == 0

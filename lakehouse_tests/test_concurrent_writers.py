"""Two writers creating the same table at once: every key lands once, whichever wins.

deltalake lets a lost race to create a table commit as version 1, appending the same
rows a second time; the lake must turn that into a conflict and a merge instead.
"""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

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


@pytest.mark.speed
@pytest.mark.parametrize("newer_snapshot", [False, True])
def test_two_compactions_of_one_month_at_once_keep_each_row_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, newer_snapshot: bool
) -> None:
    """Two compactions of the same month of raw_events at once (backfill runs of days in
    one month): the other one commits while this one holds its snapshot, and deltalake
    lets both commit (two optimizes of the same files do not conflict): every row of
    those files twice. The lake sees it in the log and takes its own compaction back:
    every event is there once. With `newer_snapshot`, a day merged in between is in
    this compaction's snapshot only: its file goes back into the table, statistics and
    all, and the next compaction merges it."""
    lake, other = LakeResource(root=str(tmp_path)), LakeResource(root=str(tmp_path))
    days = ["2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04"]

    def merge(day: str) -> None:
        events = pl.DataFrame(
            {"event_id": [f"{day}-{n}" for n in range(10)], "day": day, "line": range(10)}
        )
        lake.replace_partitions("raw_events", events, values=[day], commit_info=INFO)

    for day in days[:3]:
        merge(day)
    older = DeltaTable(lake.table_uri("raw_events"))  # the other compaction's snapshot
    if newer_snapshot:
        merge(days[3])
    expected = 40 if newer_snapshot else 30

    def compact_first() -> None:  # the other compaction, in the middle of this one
        if newer_snapshot:
            older.optimize.compact(partition_filters=[("month", "=", "2026-10")])
        else:
            other.compact_months("raw_events", days, commit_info=INFO)

    with (
        caplog.at_level(logging.WARNING, "lakehouse.lake"),
        failpoints.on("compact/raw_events", compact_first),
    ):
        found = lake.compact_months("raw_events", days, commit_info=INFO)
    history = lake.open("raw_events").history()  # type: ignore[union-attr]
    assert [c.get("operation") for c in history[:3]] == ["WRITE", "OPTIMIZE", "OPTIMIZE"]
    assert "took_back_compaction" in history[0]  # both committed: the race happened
    assert [r.getMessage() for r in caplog.records] == [
        "compaction of 'raw_events' removed 3 file(s) a concurrent compaction had removed "
        "too; taking it back (the other one's files keep those rows)"
    ]
    assert found == {"files_removed": 0, "files_added": 0}

    def held(filters: list | None = None) -> list[str]:
        rows = lake.read("raw_events", filters=filters)
        assert rows is not None
        return sorted(rows["event_id"])

    assert held() == sorted(f"{day}-{n}" for day in days[: expected // 10] for n in range(10))
    assert held([("day", "=", days[3])]) == (
        [f"{days[3]}-{n}" for n in range(10)] if newer_snapshot else []
    )
    files = lake.open("raw_events").file_uris()  # type: ignore[union-attr]
    assert len(files) == (2 if newer_snapshot else 1)
    if newer_snapshot:  # the day's file came back with its statistics, and compacts
        stats = pa.table(lake.open("raw_events").get_add_actions(flatten=True))  # type: ignore[union-attr]
        assert sorted(stats.column("min.day").to_pylist()) == [days[0], days[3]]
        assert lake.compact_months("raw_events", days, commit_info=INFO)["files_removed"] == 2
        assert held() == sorted(f"{day}-{n}" for day in days for n in range(10))

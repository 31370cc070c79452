"""Crash safety: a materialization SIGKILLed at named points leaves every table at a
committed version, and a rerun converges on the lake of a run that never crashed.

Runs happen in processes forked from a `forkserver` that has already imported
Dagster, torch and the lakehouse (see `crash_runner`): a fresh interpreter per
run would spend most of the budget on imports. The graph is cut into four
stages (raw, images, models, features); a kill point's test starts from the
never-crashed reference lake before its stage, kills a run of the stage at the
point, checks every table, reruns the stage and compares the lake and the
DataVersions with the reference after the stage. A `write/<table>` kill must
land between a data file and the commit: the table's version unchanged, an
uncommitted data file on disk; a kill one step late fails the test.

Each write verb of the lake is also killed on its own (`write/`, `create/`,
`widen/` points, including the widening no stage run reaches), then rerun.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from lakehouse import failpoints
from lakehouse.demo.world import generate_world
from lakehouse.failpoints import CRASH_VAR
from lakehouse.lake import LakeResource
from lakehouse.settings import PROJECT_ROOT

pytestmark = pytest.mark.reliability

# more than 7 log days, so some label windows are complete and both models train
WORLD = {"photos": 24, "users": 6, "days": 10, "seed": 7}
DAYS = ("2026-10-01", "2026-10-10")
STAGE_NAMES = ("raw", "images", "models", "features")
# the natural key of every table: "valid rows" includes "no key twice"
TABLE_KEYS = {
    "_object_hashes": ["key"],
    "_ingested_files": ["asset", "key"],
    "raw_objects": ["key", "sha256"],
    "raw_users": ["user_id"],
    "raw_photos": ["photo_id"],
    "raw_photo_labels": ["photo_id"],
    "raw_events": ["event_id"],
    "quarantine": ["quarantine_id"],
    "images": ["sha256"],
    "augmented_tensors": ["sha256", "aug_index", "recipe_version"],
    "style_content_classifier": ["model_version"],
    "photo_classes": ["sha256", "model_version"],
    "user_activity": ["day", "user_id", "hour"],
    "photo_features": ["photo_id"],
    "popularity_labels": ["photo_id"],
    "training_set": ["photo_id"],
    "popularity_model": ["model_version", "training_set_version"],
}
# when a row was written, not what it says: a rerun legitimately differs here
WHEN_COLUMNS = {"first_seen", "last_seen", "resolved_at", "trained_at"}


@dataclass(frozen=True)
class KillPoint:
    stage: str
    crash_at: str  # LAKEHOUSE_CRASH_AT
    where: str

    def __str__(self) -> str:
        return self.crash_at


KILL_POINTS = [
    KillPoint("raw", "hash/object:5", "while hashing the 5th source object"),
    KillPoint("raw", "create/raw_users", "creating raw_users, before its first file"),
    KillPoint("raw", "create/raw_events", "creating the partitioned raw_events"),
    KillPoint("raw", "write/_object_hashes", "mid Delta write of the hash cache"),
    KillPoint("raw", "committed/raw_objects", "between raw_objects and its quarantine rows"),
    KillPoint("raw", "write/quarantine", "mid Delta write of quarantine"),
    KillPoint("raw", "write/raw_users", "mid Delta write creating raw_users"),
    KillPoint("raw", "write/raw_events", "mid Delta write of event partitions"),
    KillPoint("raw", "committed/raw_events", "events committed, quarantine and ledger not"),
    KillPoint("raw", "committed/_ingested_files:1", "between two batches of log days"),
    KillPoint("images", "create/images", "creating images, before its first file"),
    KillPoint("images", "write/images", "mid Delta write of images"),
    KillPoint("images", "committed/images", "between images and its quarantine rows"),
    KillPoint("images", "augment/image:10", "during augmentation, 10th image"),
    KillPoint("images", "write/augmented_tensors", "mid Delta write of a tensor batch"),
    KillPoint("models", "classifier/epoch:2", "during classifier training, epoch 2"),
    KillPoint("models", "object/partial", "weights partly stored, not yet renamed"),
    KillPoint("models", "committed/style_content_classifier", "model row committed"),
    KillPoint("models", "write/photo_classes", "mid Delta write of photo_classes"),
    KillPoint("features", "write/user_activity", "mid Delta write of activity partitions"),
    KillPoint("features", "committed/popularity_labels", "between labels and training_set"),
    KillPoint("features", "create/training_set", "creating training_set"),
    KillPoint("features", "write/training_set", "mid Delta write of the training set"),
    KillPoint("features", "popularity/trained", "popularity model fitted, not stored"),
    KillPoint("features", "committed/popularity_model", "model committed, run not recorded"),
]
EXERCISED: list[str] = []
LATE_TRIES = 3
LATE = (
    "the kill came after the commit, not between the data files and it (the write watcher "
    "of lakehouse.failpoints runs real-time where the OS allows it: CAP_SYS_NICE or root)"
)
EXERCISED_VERBS: list[str] = []


def forked_run(*args: str | tuple[str, str], meet: tuple[str, object] | None = None) -> None:
    """A stage run; with `meet` (a failpoint, a barrier), the run waits at that point
    until the other run holding the barrier is there too."""
    from lakehouse_tests import crash_runner  # already imported by the forkserver

    if meet is None:
        crash_runner.materialize(*args)  # type: ignore[arg-type]
        return
    point, barrier = meet
    with failpoints.on(point, lambda: barrier.wait(timeout=120)):  # type: ignore[attr-defined]
        crash_runner.materialize(*args)  # type: ignore[arg-type]


def killed_at(log: str, crash_at: str) -> bool:
    """Whether the failpoint named by `crash_at` ([name][:nth]) logged its SIGKILL line."""
    point = crash_at.partition(":")[0]
    return f"{CRASH_VAR}={crash_at}: SIGKILL at {point}\n" in log


def conflicts_retried(log: str, table: str) -> int:
    """How many commits to `table` the lake logged as conflicted and retried."""
    return log.count(f"commit to {table!r} conflicted with a concurrent writer; retrying")


@dataclass(frozen=True)
class Started:
    process: multiprocessing.process.BaseProcess
    out: Path
    what: str


@dataclass(frozen=True)
class Runner:
    """Forks stage runs from a forkserver that preloaded `crash_runner` (and so the lakehouse)."""

    context: multiprocessing.context.BaseContext
    sources: Path

    def run(self, lake: Path, stage: str) -> dict[str, str]:
        """The data versions of a stage run that must succeed."""
        return self.finish(self.start(lake, stage))[1]

    def kill(self, lake: Path, stage: str, crash_at: str) -> str:
        """A stage run that must die by SIGKILL at `crash_at`; returns its log."""
        started = self.start(lake, stage, crash_at)
        self.finish(started, expected=-signal.SIGKILL)
        log = self.log(started)
        assert killed_at(log, crash_at), (
            f"{started.what} was killed, not at {crash_at}:\n{log[-4000:]}"
        )
        return log

    def start(
        self,
        lake: Path,
        stage: str,
        crash_at: str = "",
        name: str = "",
        meet: tuple[str, object] | None = None,
    ) -> Started:
        out = lake.parent / f"run-{stage}-{name or crash_at.replace('/', '_') or 'clean'}"
        out.mkdir()
        process = self.context.Process(
            target=forked_run,
            args=(str(self.sources), str(lake), stage, DAYS, crash_at, str(out)),
            kwargs={"meet": meet},
        )
        process.start()
        return Started(process, out, f"{stage} run ({crash_at or 'no crash'}) in {out}")

    @staticmethod
    def finish(started: Started, expected: int = 0) -> tuple[int, dict[str, str]]:
        """Exit code and data versions of a run; a run that did not end with `expected`
        (0, or -SIGKILL for a crash) fails the test with the run's log."""
        started.process.join(timeout=300)
        report = started.out / "versions.json"
        versions = json.loads(report.read_text()) if report.exists() else {}
        code = started.process.exitcode
        if code is None:  # hung: stop it before failing, so nothing outlives the test
            started.process.kill()
            started.process.join()
        if code != expected:
            ended = "still running after 300 s" if code is None else f"exit code {code}"
            raise AssertionError(
                f"{started.what}: {ended}, expected {expected}; its log ends:\n"
                + Runner.log(started)[-4000:]
            )
        return code, versions

    @staticmethod
    def log(started: Started) -> str:
        path = started.out / "run.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    sources = tmp_path_factory.mktemp("crash-world") / "sources"
    sources.mkdir()
    generate_world(sources, f"sqlite:///{sources / 'metadata.db'}", **WORLD)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["lakehouse_tests.crash_runner"])
    return Runner(context, sources)


@dataclass(frozen=True)
class Reference:
    """The never-crashed lake after each stage, and each stage's data versions."""

    lakes: dict[str, Path]
    versions: dict[str, dict[str, str]]
    contents: dict[str, dict[str, list[str]]]

    def before(self, stage: str) -> Path | None:
        index = STAGE_NAMES.index(stage)
        return self.lakes[STAGE_NAMES[index - 1]] if index else None


@pytest.fixture(scope="module")
def reference(runner: Runner, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    root = tmp_path_factory.mktemp("crash-reference")
    lake = root / "lake"
    lakes, versions, found = {}, {}, {}
    for stage in STAGE_NAMES:
        versions[stage] = runner.run(lake, stage)
        lakes[stage] = root / f"after-{stage}"
        shutil.copytree(lake, lakes[stage])
        found[stage] = contents(lake)
    return Reference(lakes, versions, found)


def table_dirs(lake: Path) -> list[Path]:
    """Tables with at least one commit (what LakeResource.table_names lists)."""
    return [lake / name for name in LakeResource(root=str(lake)).table_names()]


def read_committed(table: Path) -> pa.Table:
    """The table at its latest committed version, read completely, keys checked unique."""
    delta = DeltaTable(str(table))
    rows = delta.to_pyarrow_table()
    assert rows.num_rows == delta.count()
    key = TABLE_KEYS.get(table.name)
    assert key is not None, f"no natural key known for table {table.name}: add it to TABLE_KEYS"
    distinct = rows.group_by(key).aggregate([]).num_rows
    assert distinct == rows.num_rows, f"{table.name}: {rows.num_rows - distinct} duplicate keys"
    return rows


def contents(lake: Path, records: bool = True) -> dict[str, list[str]]:
    """Every table's rows, sorted, without the columns that say when a row was written;
    and the objects (complete ones only: a `.partial-*` is litter), without the steps'
    state records (`states/`, named by the table versions a step left) unless `records`."""
    found: dict[str, list] = {}
    for table in table_dirs(lake):
        rows = read_committed(table)
        rows = rows.drop_columns([c for c in rows.column_names if c in WHEN_COLUMNS])
        found[table.name] = sorted(repr(row) for row in rows.to_pylist())  # NaN == NaN here
    objects = lake / "objects"
    found["objects/"] = sorted(
        str(path.relative_to(objects))
        for path in objects.rglob("*")
        if path.is_file()
        and ".partial-" not in path.name
        and (records or path.relative_to(objects).parts[0] != "states")
    )
    return found


def table_versions(lake: Path) -> dict[str, int]:
    """The latest committed version of every table of a lake."""
    return {table.name: DeltaTable(str(table)).version() for table in table_dirs(lake)}


def uncommitted_files(table: Path) -> set[str]:
    """Complete data files on disk (not a write's staged `….parquet#1`) that no committed
    version of the table references."""
    on_disk = {p.name for p in table.rglob("*.parquet") if "_delta_log" not in p.parts}
    if table not in table_dirs(table.parent):
        return on_disk
    latest = DeltaTable(str(table)).version()
    referenced = {
        Path(uri).name
        for version in range(latest + 1)
        for uri in DeltaTable(str(table), version=version).file_uris()
    }
    return on_disk - referenced


@pytest.mark.parametrize("point", KILL_POINTS, ids=str)
def test_killed_run_leaves_committed_tables_and_a_rerun_converges(
    point: KillPoint, runner: Runner, reference: Reference, tmp_path: Path
) -> None:
    start = reference.before(point.stage)
    kind, _, name = point.crash_at.partition("/")
    # a write's kill can land after its commit on a loaded machine: tried again on a fresh
    # copy, up to LATE_TRIES times, as for the write verbs below; late every time fails
    for attempt in range(1, LATE_TRIES + 1):
        lake = tmp_path / f"try-{attempt}" / "lake"  # each try's run folders beside it
        lake.parent.mkdir()
        if start is None:
            lake.mkdir()
        else:
            shutil.copytree(start, lake)
        before = table_versions(lake)
        runner.kill(lake, point.stage, point.crash_at)  # died by SIGKILL there, no other
        if kind != "write" or table_versions(lake).get(name) == before.get(name):
            break
    for table in table_dirs(lake):
        read_committed(table)
    if kind in ("write", "create"):
        # the run's first write of the table: it was killed before committing anything
        assert ":" not in name, "only a table's first write leaves its version unchanged"
        assert table_versions(lake).get(name) == before.get(name), f"{LATE} ({attempt} tries)"
    if kind == "write":
        orphans = uncommitted_files(lake / name)
        assert orphans, "killed after a data file was written: one is there, uncommitted"

    versions = runner.run(lake, point.stage)
    assert versions == reference.versions[point.stage], f"rerun after {point.crash_at}"
    assert contents(lake) == reference.contents[point.stage], f"rerun after {point.crash_at}"
    EXERCISED.append(point.crash_at)


INFO = {"test": "crash"}
DAY_ROWS = pl.DataFrame({"day": ["2026-10-01", "2026-10-02"] * 3, "k": [1, 1, 2, 2, 3, 3]})


def seed(lake: LakeResource) -> None:
    """The tables the write verbs below change: t (key k), p (partitioned by day), s (a
    snapshot with fingerprints)."""
    lake.upsert("t", pl.DataFrame({"k": range(10), "v": range(10)}), ["k"], commit_info=INFO)
    lake.replace_partitions(
        "p",
        DAY_ROWS,
        values=["2026-10-01", "2026-10-02"],
        key=["k"],
        partition_column="day",
        commit_info=INFO,
    )
    snapshot = pl.DataFrame({"k": range(5), "row_sha256": [f"a{k}" for k in range(5)]})
    lake.sync_snapshot("s", snapshot, ["k"], commit_info=INFO)


# every write verb of the lake, as the product runs it (key bounds and all)
VERBS = {
    "create": lambda lake: lake.upsert(
        "fresh", pl.DataFrame({"k": [1, 2], "v": [1, 2]}), ["k"], commit_info=INFO
    ),
    "upsert": lambda lake: lake.upsert(
        "t", pl.DataFrame({"k": range(5, 15), "v": range(50, 60)}), ["k"], commit_info=INFO
    ),
    "insert_new": lambda lake: lake.insert_new(
        "t", pl.DataFrame({"k": range(8, 12), "v": range(4)}), ["k"], commit_info=INFO
    ),
    "delete_keys": lambda lake: lake.delete_keys(
        "t", pl.DataFrame({"k": [1, 2]}), commit_info=INFO
    ),
    "sync_snapshot": lambda lake: lake.sync_snapshot(
        "s",
        pl.DataFrame({"k": range(2, 7), "row_sha256": [f"b{k}" for k in range(2, 7)]}),
        ["k"],
        commit_info=INFO,
    ),
    "replace_partitions": lambda lake: lake.replace_partitions(
        "p",
        DAY_ROWS.filter(pl.col("k") != 2),
        values=["2026-10-02"],
        key=["k"],
        partition_column="day",
        commit_info=INFO,
    ),
    "widen": lambda lake: lake.upsert(
        "t", pl.DataFrame({"k": [3, 20], "v": [1.5, 2.5]}), ["k"], commit_info=INFO
    ),
}
VERB_POINTS = [
    ("create", "create/fresh"),
    ("create", "write/fresh"),
    ("upsert", "write/t"),
    ("insert_new", "write/t"),
    ("delete_keys", "write/t"),
    ("sync_snapshot", "write/s"),
    ("replace_partitions", "write/p"),
    ("widen", "widen/t"),
    ("widen", "write/t"),
]


def forked_write(lake: str, verb: str, crash_at: str, log: str) -> None:
    """One write verb in this (forked) process, its stderr (the failpoint's line) to `log`."""
    os.dup2(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND), 2)
    os.environ.pop(CRASH_VAR, None)
    if crash_at:
        os.environ[CRASH_VAR] = crash_at
    VERBS[verb](LakeResource(root=lake))
    os._exit(0)


def lake_rows(lake: Path) -> dict[str, tuple[str, list[str]]]:
    """Every table's schema and sorted rows, at its latest committed version."""
    found = {}
    for table in table_dirs(lake):
        rows = DeltaTable(str(table)).to_pyarrow_table()
        found[table.name] = (str(rows.schema), sorted(repr(r) for r in rows.to_pylist()))
    return found


@pytest.mark.parametrize(("verb", "crash_at"), VERB_POINTS, ids=lambda v: str(v))
def test_a_write_verb_killed_mid_write_commits_nothing_and_a_rerun_converges(
    verb: str, crash_at: str, runner: Runner, tmp_path: Path
) -> None:
    """Each write verb, killed where the harness kills stage runs: `write/<t>` after a data
    file landed and before the commit, `create/<t>` before a table's first file,
    `widen/<t>` before a column's widening is written."""
    expected = tmp_path / "expected"
    seed(LakeResource(root=str(expected)))
    VERBS[verb](LakeResource(root=str(expected)))
    kind, _, name = crash_at.partition("/")
    # A one-file write commits microseconds after its data file: on a loaded machine the
    # watcher's kill can land after the commit. Such a kill proves nothing either way, so
    # it is tried again on a fresh lake, up to LATE_TRIES times; a late kill every time fails.
    for attempt in range(1, LATE_TRIES + 1):
        lake, log = tmp_path / f"lake-{attempt}", tmp_path / f"write-{attempt}.log"
        seed(LakeResource(root=str(lake)))
        before = table_versions(lake)
        process = runner.context.Process(
            target=forked_write, args=(str(lake), verb, crash_at, str(log))
        )
        process.start()
        process.join(timeout=120)
        written = log.read_text(errors="replace") if log.exists() else ""
        assert process.exitcode == -signal.SIGKILL, f"{verb}: exit {process.exitcode}\n{written}"
        assert killed_at(written, crash_at), f"{verb} was killed, not at {crash_at}:\n{written}"
        if kind != "write" or table_versions(lake) == before:
            break
    assert table_versions(lake) == before, f"{LATE} ({LATE_TRIES} tries)"
    if kind == "write":
        assert uncommitted_files(lake / name), "a data file was written, uncommitted"

    VERBS[verb](LakeResource(root=str(lake)))
    assert lake_rows(lake) == lake_rows(expected)
    EXERCISED_VERBS.append(f"{verb}:{crash_at}")


def test_two_runs_of_the_same_assets_at_once_leave_no_duplicates(
    runner: Runner, reference: Reference, tmp_path: Path
) -> None:
    """Two runs of the raw layer merge the same rows into the same tables at the same
    time (partition replaces, upserts, snapshots): conflicting commits are retried on a
    fresh snapshot, so every key lands once.

    The race is forced: both runs wait for each other at `create/raw_users`, after each
    found the table missing, so both commit a version 0 and one of them must meet the
    conflict and retry (its log says so)."""
    lake = tmp_path / "lake"
    lake.mkdir()
    barrier = runner.context.Barrier(2)
    both = [
        runner.start(lake, "raw", name=f"concurrent-{n}", meet=("create/raw_users", barrier))
        for n in (1, 2)
    ]
    for started in both:
        _, versions = runner.finish(started)
        assert versions == reference.versions["raw"], started.what
    # unique keys checked on the way. Which table versions each step of the two runs
    # found and left depends on whose commit came first, and so do the state records
    # (a step records none when another run committed meanwhile)
    assert contents(lake, records=False) == contents(reference.lakes["raw"], records=False)
    retried = {
        started.what: conflicts_retried(runner.log(started), "raw_users") for started in both
    }
    assert sum(retried.values()) >= 1, f"no commit to raw_users conflicted: {retried}"


# a failpoint in the product, literal or per table: failpoint("x/y"), failpoint(f"x/{name}")
PRODUCT_FAILPOINT = re.compile(r"""failpoint\(f?"([a-z_]+/)([a-z_]*)""")
# a write's kill point is armed by during_write, not failpoint(): `write/<table>`
PRODUCT_WRITE_POINT = re.compile(r"during_write\(")
# points the product has that are not kill points: where the test that acts there lives
ACTION_POINTS = {
    "lake/unavailable": (
        "test_storage_faults.py",
        'failpoints.on("lake/unavailable"',
    ),  # reached only when the object store stopped answering: the outage test reopens it
    "compact/": (
        "test_concurrent_writers.py",
        'failpoints.on("compact/raw_events"',
    ),  # between a compaction's snapshot and its commit: another compaction commits there
}


def product_failpoints() -> set[str]:
    """Every failpoint the product can reach: a literal name ("hash/object") or, for a
    name made per table, its prefix ("committed/")."""
    found: set[str] = set()
    for path in (PROJECT_ROOT / "lakehouse").rglob("*.py"):
        if path.name == "failpoints.py":
            continue
        text = path.read_text()
        named = PRODUCT_FAILPOINT.findall(text)
        calls = len(re.findall(r"\bfailpoint\(", text))
        assert calls == len(named), f"{path}: a failpoint whose name this test cannot read"
        for prefix, rest in named:
            found.add(prefix + rest)
        if PRODUCT_WRITE_POINT.search(text):
            found.add("write/")
    return found


def test_every_failpoint_of_the_product_is_a_kill_point_of_the_harness() -> None:
    """A failpoint added to the product without a kill point here would never be proven
    safe to die at: each literal point is killed by name, each per-table point
    (`write/`, `create/`, `widen/`, `committed/`) at one table at least."""
    points = product_failpoints()
    assert {"write/", "create/", "widen/", "committed/", "hash/object"} <= points, points
    harness = {p.crash_at.partition(":")[0] for p in KILL_POINTS} | {
        crash_at for _, crash_at in VERB_POINTS
    }
    missing = {
        point
        for point in points - ACTION_POINTS.keys()
        if not any(
            name == point or (point.endswith("/") and name.startswith(point)) for name in harness
        )
    }
    assert not missing, f"failpoints of the product the crash harness never kills at: {missing}"
    for point, (test_file, use) in ACTION_POINTS.items():
        assert point in points, f"{point} is no longer a failpoint of the product"
        assert use in (PROJECT_ROOT / "lakehouse_tests" / test_file).read_text(), point


def test_kill_points_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """Every kill point distinct, at least 20, and every one of them (and every write-verb
    point) reached and killed in this session: the tests above append a point only after
    it killed its run there and the rerun converged. Run with the whole file."""
    names = [point.crash_at for point in KILL_POINTS]
    assert len(set(names)) == len(names) >= 20
    verb_points = [f"{verb}:{crash_at}" for verb, crash_at in VERB_POINTS]
    with capsys.disabled():
        print(
            f"\ncrash harness: {len(EXERCISED)} of {len(names)} kill points exercised "
            f"(SIGKILL, committed tables checked, rerun converged on the reference); "
            f"{len(EXERCISED_VERBS)} of {len(VERB_POINTS)} write-verb kill points"
        )
    assert sorted(EXERCISED) == sorted(names), (
        f"kill points not exercised: {sorted(set(names) - set(EXERCISED))}"
    )
    assert sorted(EXERCISED_VERBS) == sorted(verb_points), (
        f"write-verb kill points not exercised: {sorted(set(verb_points) - set(EXERCISED_VERBS))}"
    )

"""A lakehouse left running: `dagster dev` on loopback over a small world, changed under it.

One `dagster dev` (webserver + daemon) serves the whole module. Nothing is switched on
in the UI: the automation sensor runs because the code says so. What happened is read
from the instance's event log, the webserver's GraphQL and the Delta tables' own commit
metrics, never from what an asset says about itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from deltalake import DeltaTable
from PIL import Image

from lakehouse.demo.world import generate_world
from lakehouse.settings import AUTOMATION_INTERVAL_VAR, PROJECT_ROOT
from lakehouse_tests.conftest import EVERYTHING, Lakehouse
from lakehouse_tests.delta_counts import versions
from lakehouse_tests.servers.browser import CHROMIUM, require_chromium
from lakehouse_tests.servers.dagster_web import graphql
from lakehouse_tests.servers.postgres import free_port

pytestmark = pytest.mark.living

BIN = Path(sys.executable).parent
WORLD = {"photos": 16, "users": 4, "days": 12, "seed": 3}
FIRST_DAY, LAST_DAY = "2026-10-01", "2026-10-12"
HELD_BACK_DAY = LAST_DAY  # appears while the daemon runs: (b)
OLD_DAY = "2026-10-02"  # rewritten while the daemon runs: (c)
LOCATION = "lakehouse.definitions"
STARTUP_S = 120
SETTLE_S = 150
INTERVAL_S = 5
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}

DAGSTER_YAML = """\
storage:
  sqlite:
    base_dir: {home}/storage
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
concurrency:
  runs:
    max_concurrent_runs: 2
telemetry:
  enabled: false
nux:
  enabled: false
"""


@dataclass
class Live:
    """The running deployment: its URL, instance, world and lake."""

    url: str
    home: Path
    log: Path
    lakehouse: Lakehouse
    instance: dg.DagsterInstance

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return graphql(self.url, query, variables)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_for(what: str, probe, timeout: float, live: Live | None = None, every: float = 1.0):
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s\n{live.tail() if live else ''}")
        time.sleep(every)


SENSOR_TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      sensorState { status ticks(limit: 5) { status timestamp runIds } }
    }
  }
}
"""


def automation_ticks(live: Live) -> list[dict]:
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": "__repository__",
        "sensorName": "automation",
    }
    found = live.graphql(SENSOR_TICKS, {"selector": selector})["sensorOrError"]
    if found["__typename"] != "Sensor":
        return []
    return found["sensorState"]["ticks"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A 16-photo, 12-day world (the last day held back), materialized once, then
    `dagster dev` over it; stopped (process group) at the end of the module."""
    root = tmp_path_factory.mktemp("living")
    sources, home = root / "sources", root / "home"
    sources.mkdir()
    home.mkdir()
    generate_world(sources, f"sqlite:///{sources / 'metadata.db'}", **WORLD)
    held_back = sources / "logs" / f"{HELD_BACK_DAY}.jsonl"
    shutil.move(held_back, root / held_back.name)
    (home / "dagster.yaml").write_text(DAGSTER_YAML.format(home=home))
    instance = dg.DagsterInstance.from_config(str(home))
    lakehouse = Lakehouse(sources=sources, lake=root / "lake", instance=instance)
    lakehouse.observe()
    lakehouse.materialize(FIRST_DAY, "2026-10-11", select=EVERYTHING)

    port, log = free_port(), root / "dagster-dev.log"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LAKEHOUSE_LAKE": str(lakehouse.lake),
        "LAKEHOUSE_SOURCES": str(sources),
        "LAKEHOUSE_METADATA_DB": lakehouse.db_url,
        AUTOMATION_INTERVAL_VAR: str(INTERVAL_S),
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-m", LOCATION, "-h", "127.0.0.1", "-p", str(port)],
            env=env,
            cwd=home,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Live(f"http://127.0.0.1:{port}", home, log, lakehouse, instance)
    try:

        def up() -> bool:
            assert server.poll() is None, f"dagster dev exited:\n{running.tail()}"
            try:
                return bool(automation_ticks(running))
            except (urllib.error.URLError, ConnectionError, TimeoutError, AssertionError):
                return False

        wait_for("the automation sensor's first tick", up, STARTUP_S, running)
        yield running
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        instance.dispose()


OBSERVE_JOBS = {"observe_all", "observe_sources", "observe_logs"}
BACKFILLS = """
query {
  partitionBackfillsOrError(status: REQUESTED) { ... on PartitionBackfills { results { id } } }
}
"""


def automation_runs(live: Live, since: float) -> list[dg.DagsterRun]:
    """Runs created after `since` that are not source observations (those the test starts,
    or the schedules every 15 minutes)."""
    runs = live.instance.get_runs(
        filters=dg.RunsFilter(created_after=datetime.fromtimestamp(since, UTC))
    )
    return [run for run in runs if run.job_name not in OBSERVE_JOBS]


def describe_runs(runs: list[dg.DagsterRun]) -> str:
    """One line a run: id, status, assets, partition or backfill (for failure messages)."""
    lines = []
    for run in runs:
        assets = sorted(key.to_user_string() for key in run.asset_selection or [])
        where = run.tags.get("dagster/partition") or run.tags.get("dagster/backfill") or ""
        lines.append(f"{run.run_id[:8]} {run.status.value} {where} {assets}")
    return "\n".join(lines)


def settled(
    live: Live, since: float, timeout: float = SETTLE_S, some: bool = True
) -> list[dg.DagsterRun]:
    """The automation's runs after `since`, once it is done: at least one run (unless not
    `some`), all finished, no backfill pending, and two ticks after the last run ended (and
    after `since`) that requested nothing."""
    seen: list[dg.DagsterRun] = []

    def done() -> bool:
        runs = seen[:] = automation_runs(live, since)
        if (some and not runs) or any(run.status.value not in FINISHED for run in runs):
            return False
        if live.graphql(BACKFILLS)["partitionBackfillsOrError"]["results"]:
            return False
        ends = [live.instance.get_run_record_by_id(run.run_id).end_time or 0 for run in runs]
        last = max([since, *ends])
        later = [tick for tick in automation_ticks(live) if tick["timestamp"] > last]
        # two: a tick may start before the last run's events are visible to it
        return len(later) >= 2 and not any(tick["runIds"] for tick in later)

    try:
        wait_for("the automation to settle", done, timeout, live, every=2)
        return seen
    except pytest.fail.Exception as failed:
        raise AssertionError(f"{failed}\nruns:\n{describe_runs(seen)}") from None


def materialized_since(live: Live, since: float) -> dict[str, set[str | None]]:
    """Per asset, the partitions materialized after `since` (event log records)."""
    found: dict[str, set[str | None]] = {}
    graph = live.lakehouse.definitions().resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        records = live.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_timestamp=since), limit=1000
        ).records
        if records:
            found[key.to_user_string()] = {r.partition_key for r in records}
    return found


def commits_since(live: Live, name: str, version: int | None) -> list[dict]:
    """The Delta commits of table `name` after `version`, oldest first, with their metrics."""
    table = DeltaTable(str(live.lakehouse.lake / name))
    first = -1 if version is None else version
    return sorted(
        (entry for entry in table.history() if entry["version"] > first),
        key=lambda entry: entry["version"],
    )


def latest_record(live: Live, asset: str) -> dg.EventLogRecord:
    """The latest materialization of `asset` in the event log (with its storage id)."""
    return live.instance.fetch_materializations(dg.AssetKey(asset), limit=1).records[0]


def downstream_of(live: Live, *names: str) -> set[str]:
    """The materializable assets below `names` in the asset graph."""
    graph = live.lakehouse.definitions().resolve_asset_graph()
    below = dg.AssetSelection.assets(*names).downstream(include_self=False).resolve(graph)
    return {key.to_user_string() for key in below if graph.get(key).is_materializable}


def rows_written(live: Live, name: str, version: int | None) -> dict[str, int]:
    """Rows inserted, updated and deleted by the commits of `name` after `version`."""
    totals = dict.fromkeys(("inserted", "updated", "deleted"), 0)
    for entry in commits_since(live, name, version):
        metrics = entry.get("operationMetrics") or {}
        for kind in totals:
            totals[kind] += int(metrics.get(f"num_target_rows_{kind}", 0))
        if entry["operation"] == "WRITE":
            totals["inserted"] += int(metrics.get("num_added_rows", 0))
    return totals


def test_a_changed_photo_flows_to_exactly_its_downstream(live: Live) -> None:
    lake = live.lakehouse.lake_resource
    before = versions(lake)
    in_training = lake.read("training_set").select("photo_id")
    labelled = lake.read("raw_photo_labels").select("photo_id")
    photo = (
        lake.read("raw_photos")
        .join(in_training, on="photo_id")
        .join(labelled, on="photo_id", how="anti")  # a labelled one would retrain the classifier
        .sort("photo_id")
        .row(0, named=True)
    )
    path = live.lakehouse.sources / photo["object_key"]
    path.write_bytes(path.read_bytes())  # same bytes, new mtime: nothing is stale
    live.lakehouse.observe()
    assert not stale(staleness(live))
    with Image.open(path) as image:
        image.load()
        image.rotate(90).save(path, format=image.format)
    since = time.time()
    live.lakehouse.observe()

    # Dagster 1.13 marks the direct readers of a changed source stale; what is further
    # down turns stale once those have rematerialized with new content.
    assert stale(staleness(live)) == {"raw_objects"}
    runs = settled(live, since)

    done = materialized_since(live, since)
    assert set(done) == downstream_of(live, "photo_objects"), describe_runs(runs)
    assert not {"raw_users", "raw_events", "user_activity"} & set(done)
    views = lake.read("augmented_tensors").group_by("sha256").len()["len"].max()
    assert rows_written(live, "images", before["images"])["inserted"] == 1
    assert rows_written(live, "augmented_tensors", before["augmented_tensors"])["inserted"] == views
    assert rows_written(live, "photo_classes", before["photo_classes"])["inserted"] == 1
    for name in ("photo_features", "training_set"):
        written = rows_written(live, name, before[name])
        assert written["inserted"] + written["updated"] == 1, (name, written)
    for name in ("raw_events", "user_activity", "raw_users", "style_content_classifier"):
        assert lake.version(name) == before[name], f"{name} got a new version"


STALENESS = """
query Staleness($day: String!, $other: String!) {
  assetNodes {
    assetKey { path }
    isMaterializable
    isPartitioned
    staleStatus
    staleCauses { key { path } reason }
  }
  assetNodeOrError(assetKey: {path: ["raw_events"]}) {
    ... on AssetNode { day: staleStatus(partition: $day) other: staleStatus(partition: $other) }
  }
}
"""


def staleness(live: Live, day: str = OLD_DAY, other: str = "2026-10-03") -> dict[str, str]:
    """What the UI says: the stale status of every unpartitioned asset, and of two days of
    raw_events (`raw_events[day]`)."""
    data = live.graphql(STALENESS, {"day": day, "other": other})
    found = {
        "/".join(node["assetKey"]["path"]): node["staleStatus"]
        for node in data["assetNodes"]
        if node["isMaterializable"] and not node["isPartitioned"]
    }
    events = data["assetNodeOrError"]
    found[f"raw_events[{day}]"], found[f"raw_events[{other}]"] = events["day"], events["other"]
    return found


def stale(found: dict[str, str]) -> set[str]:
    return {name for name, status in found.items() if status == "STALE"}


def test_b_a_new_log_day_flows_to_that_partition_and_its_readers(live: Live) -> None:
    shutil.move(live.home.parent / f"{HELD_BACK_DAY}.jsonl", live.lakehouse.sources / "logs")
    since = time.time()
    live.lakehouse.observe()

    runs = settled(live, since)

    done = materialized_since(live, since)
    readers = downstream_of(live, "activity_logs", "activity_log_days")
    assert set(done) == readers, describe_runs(runs)
    assert done["raw_events"] == {HELD_BACK_DAY}
    assert done["user_activity"] == {HELD_BACK_DAY}
    days = live.lakehouse.lake_resource.read("raw_events", columns=["day"])["day"]
    assert HELD_BACK_DAY in set(days)
    (record,) = live.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_events"), asset_partitions=[LAST_DAY]),
        limit=1,
    ).records
    metadata = record.asset_materialization.metadata
    assert metadata["dagster/partition_row_count"].value == (days == LAST_DAY).sum()
    assert metadata["dagster/uri"].value.startswith("file:///")
    parsing = next(run for run in runs if dg.AssetKey("raw_events") in (run.asset_selection or []))
    log = live.graphql(RUN_LOG, {"runId": parsing.run_id})["logsForRun"]["events"]
    lines = [event.get("message") or "" for event in log]
    assert any(line.startswith("raw_events: parsing log days: 1 days in") for line in lines)
    assert not stale(staleness(live)), describe_runs(runs)


def test_c_an_old_log_day_rewritten_marks_its_readers_stale_then_flows_on(live: Live) -> None:
    lake = live.lakehouse.lake_resource
    before = {name: lake.version(name) for name in ("raw_events", "photo_features", "images")}
    path = live.lakehouse.sources / "logs" / f"{OLD_DAY}.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-5]))  # the day's last five lines withdrawn
    since = time.time()
    live.lakehouse.observe()

    # the day's partition, and every unpartitioned asset that reads all days; nothing else
    # (not the other days, not the images)
    assert stale(staleness(live)) == {
        f"raw_events[{OLD_DAY}]",
        "quarantine",
        "photo_features",
        "popularity_labels",
    }

    runs = settled(live, since)

    done = materialized_since(live, since)
    assert done["raw_events"] == {OLD_DAY}
    assert done["user_activity"] == {OLD_DAY}
    assert set(done) == downstream_of(live, "activity_logs", "activity_log_days")
    assert lake.version("images") == before["images"]
    assert rows_written(live, "raw_events", before["raw_events"])["deleted"] > 0
    assert not stale(staleness(live)), describe_runs(runs)


def test_demo_data_reports_progress_off_a_terminal(tmp_path: Path) -> None:
    out = tmp_path / "world"
    done = subprocess.run(
        [str(BIN / "lakehouse"), "demo-data", "--photos", "5", "--users", "2", "--days", "3"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "demo-data: writing photos: 5 photos in " in done.stderr


FRESHNESS = """
query {
  assetNodes {
    assetKey { path }
    internalFreshnessPolicy {
      __typename
      ... on CronFreshnessPolicy { deadlineCron lowerBoundDeltaSeconds timezone }
    }
    freshnessStatusInfo { freshnessStatus }
  }
}
"""
NIGHTLY = {"training_set", "popularity_model"}


def test_the_nightly_assets_carry_a_cron_freshness_policy_the_ui_evaluates(live: Live) -> None:
    def nodes() -> dict[str, dict]:
        found = live.graphql(FRESHNESS)["assetNodes"]
        return {"/".join(node["assetKey"]["path"]): node for node in found}

    policies = {name: n["internalFreshnessPolicy"] for name, n in nodes().items()}
    assert {name for name, policy in policies.items() if policy} == NIGHTLY
    for name in NIGHTLY:
        assert policies[name] == {
            "__typename": "CronFreshnessPolicy",
            "deadlineCron": "0 4 * * *",  # the 02:00 UTC nightly run plus two hours' grace
            "lowerBoundDeltaSeconds": 2 * 3600,
            "timezone": "UTC",
        }

    def evaluated() -> dict[str, str] | None:
        found = {name: nodes()[name]["freshnessStatusInfo"]["freshnessStatus"] for name in NIGHTLY}
        return found if "UNKNOWN" not in found.values() else None

    # materialized since the last 04:00 deadline's window opened (02:00): fresh
    assert wait_for("a freshness evaluation", evaluated, 60, live) == dict.fromkeys(
        NIGHTLY, "HEALTHY"
    )


PICTURES = {
    "augmented_tensors": ["augmentation_grid"],
    "style_content_classifier": ["loss_curve", "confusion_content", "confusion_style"],
    "training_set": ["label_distribution"],
    "popularity_model": ["predicted_vs_actual"],
}


def test_pictures_are_stored_once_and_reachable_after_a_no_change_run(live: Live) -> None:
    before = {asset: latest_record(live, asset) for asset in PICTURES}
    started = time.time()
    live.lakehouse.materialize(FIRST_DAY, LAST_DAY, select=EVERYTHING)  # nothing changed

    for asset, names in PICTURES.items():
        latest = latest_record(live, asset)
        assert latest.storage_id > before[asset].storage_id, f"{asset} did not materialize"
        metadata = latest.asset_materialization.metadata
        earlier = before[asset].asset_materialization.metadata
        for name in names:
            sha256 = metadata[f"{name}/sha256"].value
            stored = Path(urllib.request.url2pathname(metadata[f"{name}/uri"].value[7:]))
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha256, name
            assert stored.read_bytes().startswith(b"\x89PNG"), name
            was = getattr(earlier.get(f"{name}/sha256"), "value", None)
            assert was == sha256, f"{asset}/{name} changed in a no-change run: {earlier}"
            assert "data:image" not in metadata[name].value, f"{asset}/{name} stored again"
            records = live.instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
            copies = [
                r
                for r in records
                if getattr(r.asset_materialization.metadata.get(f"{name}/sha256"), "value", None)
                == sha256
                and "data:image" in r.asset_materialization.metadata[name].value
            ]
            assert len(copies) == 1, f"{asset}/{name}: {len(copies)} copies of one picture"
            shown = copies[0].asset_materialization.metadata[name].value
            assert shown.rstrip().endswith("*"), f"{asset}/{name} has no caption"
    metadata = live.instance.get_latest_materialization_event(
        dg.AssetKey("popularity_model")
    ).asset_materialization.metadata
    compared = metadata["metrics_vs_baselines"].value
    assert [record.data["model"] for record in compared.records][1:] == [
        "baseline: train mean",
        "ridge without classifier features",
    ]
    weak = live.instance.get_latest_materialization_event(dg.AssetKey("weak_labels"))
    assert isinstance(weak.asset_materialization.metadata["functions"], dg.TableMetadataValue)
    settled(live, started, some=False)  # let the automation finish what that run set off


RUN_LOG = """
query Log($runId: ID!) {
  runOrError(runId: $runId) { ... on Run { status } }
  logsForRun(runId: $runId) {
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message }
        ... on ExecutionStepFailureEvent { error { message } }
      }
    }
  }
}
"""


def finished_run(live: Live, run_id: str) -> dict:
    def probe() -> dict | None:
        found = live.graphql(RUN_LOG, {"runId": run_id})
        return found if found["runOrError"]["status"] in FINISHED else None

    return wait_for(f"run {run_id}", probe, SETTLE_S, live, every=2)


def test_an_unreachable_source_fails_with_one_line_and_is_not_retried_in_a_loop(
    live: Live,
) -> None:
    sources = live.lakehouse.sources
    objects = live.lakehouse.lake_resource.read("raw_objects")
    key = objects.filter((pl.col("status") == "current") & (pl.col("media_type") == "image/png"))[
        "key"
    ][0]
    with Image.open(sources / key) as image:
        image.load()
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(sources / key, format=image.format)
    since = time.time()
    live.lakehouse.observe()  # a changed photo: the automation will request raw_objects...
    away = sources.with_name("sources-away")
    sources.rename(away)  # ...and the store stops answering before that run starts
    try:

        def failed() -> list[dg.DagsterRun]:
            return [run for run in automation_runs(live, since) if run.status.value == "FAILURE"]

        (run,) = wait_for("the automation's run to fail", failed, SETTLE_S, live, every=2)
        found = finished_run(live, run.run_id)
        errors = [
            event["error"]["message"]
            for event in found["logsForRun"]["events"]
            if event["__typename"] == "ExecutionStepFailureEvent"
        ]
        assert errors, "no step failed"
        first_line = errors[0].strip().splitlines()[0]
        assert str(sources) in first_line and "no such directory" in first_line, errors[0]

        ended = live.instance.get_run_record_by_id(run.run_id).end_time or 0

        def three_ticks() -> bool:
            return len([t for t in automation_ticks(live) if t["timestamp"] > ended]) >= 3

        wait_for("three automation ticks", three_ticks, 60, live)
        retried = [other for other in automation_runs(live, since) if other.run_id != run.run_id]
        assert not retried, f"the automation retried: {describe_runs(retried)}"
    finally:
        away.rename(sources)


CHECKS = """
query Checks {
  assetNodeOrError(assetKey: {path: ["photo_features"]}) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks { checks { name executionForLatestMaterialization { status } } }
      }
    }
  }
  assetConditionEvaluationRecordsOrError(assetKey: {path: ["training_set"]}, limit: 1) {
    ... on AssetConditionEvaluationRecords {
      records { evaluationNodes { userLabel expandedLabel numTrue } }
    }
  }
}
"""


def test_d_a_failing_blocking_check_holds_the_downstream_back_and_says_why(live: Live) -> None:
    lake = live.lakehouse.lake_resource
    features = live.lakehouse.lake / "photo_features"
    rows = pl.read_delta(str(features)).sort("photo_id")
    rows.head(1).write_delta(str(features), mode="append")  # someone wrote a second row
    retitled = int(rows["photo_id"][-1])
    with sqlite3.connect(live.lakehouse.sources / "metadata.db") as db:
        db.execute("UPDATE photos SET title = title || ' (edited)' WHERE photo_id = ?", [retitled])
    before = latest_record(live, "training_set")
    training_version = lake.version("training_set")
    since = time.time()
    live.lakehouse.observe()

    runs = settled(live, since)

    done = materialized_since(live, since)
    assert "photo_features" in done, describe_runs(runs)
    assert not {"training_set", "popularity_model"} & set(done), describe_runs(runs)
    assert latest_record(live, "training_set").storage_id == before.storage_id
    assert lake.version("training_set") == training_version
    found = live.graphql(CHECKS)
    statuses = {
        check["name"]: (check["executionForLatestMaterialization"] or {}).get("status")
        for check in found["assetNodeOrError"]["assetChecksOrError"]["checks"]
    }
    assert statuses["photo_features_unique"] == "FAILED"
    # the automation tab of training_set: its blocking-check condition is what is false
    nodes = found["assetConditionEvaluationRecordsOrError"]["records"][0]["evaluationNodes"]
    blocking = [n for n in nodes if n["userLabel"] == "all_deps_blocking_checks_passed"]
    assert blocking and blocking[0]["numTrue"] == 0, nodes
    assert staleness(live)["training_set"] == "STALE"
    # repaired by hand (the duplicate removed); training_set stays stale until materialized
    pl.read_delta(str(features)).unique(maintain_order=True).write_delta(
        str(features), mode="overwrite"
    )


# --- the UI in a real browser -----------------------------------------------------------

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
GROUPS = ("sources", "raw", "curated", "features", "models", "labels")
UI_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Debian's chromium driven by Playwright (no browser download)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def ui_page(
    chromium, live: Live, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[object]:
    """A fresh page on the UI; its screenshot is kept in the test's temp dir."""
    context = chromium.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    browser_page = context.new_page()
    try:
        yield browser_page
    finally:
        browser_page.screenshot(path=tmp_path / f"{request.node.name}.png", full_page=True)
        context.close()


def open_ui(page, live: Live, path: str) -> None:
    page.goto(f"{live.url}{path}", wait_until="networkidle", timeout=UI_TIMEOUT_MS)


def picture_loads(page, live: Live, asset: str, name: str) -> dict:
    """Open the event of `asset` that shows picture `name` and its markdown; the image's
    load state, size and caption."""
    records = live.instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    shown = next(
        r
        for r in records
        if "data:image" in getattr(r.asset_materialization.metadata.get(name), "value", "")
    )
    open_ui(page, live, f"/assets/{asset}?view=events&time={int(shown.timestamp * 1000)}")
    row = page.locator("tr", has=page.get_by_text(name, exact=True))
    row.first.get_by_text("[Show Markdown]").click()
    image = page.locator("img[src^='data:image/png']").first
    image.wait_for()
    page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=image.element_handle())
    return image.evaluate("i => ({width: i.naturalWidth, caption: i.alt})")


def test_browser_lineage_shows_every_group(ui_page, live: Live) -> None:
    open_ui(ui_page, live, "/asset-groups")
    for group in GROUPS:
        ui_page.get_by_text(group, exact=True).first.wait_for()
    assert "Global asset lineage" in ui_page.inner_text("body")


def test_browser_photo_classes_shows_its_gpu_pool_and_tags(ui_page, live: Live) -> None:
    open_ui(ui_page, live, "/assets/photo_classes")
    ui_page.get_by_text("Compute details").click()
    ui_page.get_by_text("dagster-celery/queue: gpu").wait_for()
    details = ui_page.inner_text("body")
    assert "Pool\ngpu" in details
    assert "nvidia.com/gpu" in details
    assert "PyTorch" in details  # the kinds


def test_browser_augmented_tensors_grid_image_loads(ui_page, live: Live) -> None:
    image = picture_loads(ui_page, live, "augmented_tensors", "augmentation_grid")
    assert image["width"] > 100
    assert "augmented views" in image["caption"]
    assert ui_page.get_by_text("augmented views").first.is_visible()


def test_browser_popularity_model_shows_metrics_and_plots(ui_page, live: Live) -> None:
    open_ui(ui_page, live, "/assets/popularity_model")
    ui_page.get_by_text("metrics_vs_baselines").first.wait_for()
    text = ui_page.inner_text("body")
    for shown in ("val_mae", "baseline_mean_mae", "val_spearman", "baseline: train mean"):
        assert shown in text, shown
    image = picture_loads(ui_page, live, "popularity_model", "predicted_vs_actual")
    assert image["width"] > 100 and "predicted vs actual" in image["caption"]


def test_browser_shows_an_asset_check(ui_page, live: Live) -> None:
    open_ui(ui_page, live, "/assets/photo_features?view=checks")
    ui_page.get_by_text("photo_features_unique").first.wait_for()
    text = ui_page.inner_text("body")
    assert "photo_features_no_leakage" in text
    assert "Failed" in text or "Succeeded" in text


def test_browser_materialize_a_stale_asset_and_see_the_run_succeed(ui_page, live: Live) -> None:
    assert staleness(live)["training_set"] == "STALE"  # photo_features moved on in (d)
    open_ui(ui_page, live, "/assets/training_set")
    ui_page.get_by_text("Materialize", exact=True).first.click()
    toast = ui_page.get_by_text("Launched run").first
    toast.wait_for()
    ui_page.get_by_text("View", exact=True).first.click()
    ui_page.wait_for_url("**/runs/**")
    ui_page.get_by_text("Success", exact=True).first.wait_for(timeout=SETTLE_S * 1000)
    assert staleness(live)["training_set"] == "FRESH"

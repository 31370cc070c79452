"""The production profile on real servers: Postgres instance, S3 lake and sources, Celery queues.

One module-scoped deployment (Postgres, moto S3, Redis, a `cpu` and a `gpu` Celery worker
started by `make workers`) serves every test. The workers' environment names the lake, so
the tests share it and run in file order: the log-day backfill first, on an empty lake.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa
from deltalake import DeltaTable

from lakehouse import failpoints
from lakehouse.errors import ConfigError
from lakehouse.graph.executors import EXECUTOR_VAR, default_executor
from lakehouse.lake import LakeResource
from lakehouse.raw.logs import parse_log_day
from lakehouse.resources import ObjectStoreResource
from lakehouse.settings import (
    CELERY_BROKER_VAR,
    ENV_VAR,
    PRODUCTION_VARS,
    PROJECT_ROOT,
)
from lakehouse.sources.contract import log_key
from lakehouse_tests.conftest import WORLD
from lakehouse_tests.runs import runs_succeeded
from lakehouse_tests.servers.postgres import free_port, postgres_server
from lakehouse_tests.servers.redis import redis_server
from lakehouse_tests.servers.s3 import aws_settings, s3_server

# Only the tests on the `deployment` need its servers: postgres_server() and redis_server()
# fail under CI=true (skip elsewhere) naming what is missing, so the others always run.
pytestmark = [pytest.mark.scaleout]

BIN = Path(sys.executable).parent
DAYS = [f"2026-10-0{day}" for day in range(1, 8)]
GPU_STEPS = {"style_content_classifier", "photo_classes"}
RUN_WAIT_S = 600
# The production profile's run config (make's EXECUTION): Celery needs none; a short
# training keeps the test about routing, not about the classifier.
RUN_CONFIG = {"ops": {"style_content_classifier": {"config": {"epochs": 3}}}}


@dataclass
class Deployment:
    """The environment of the production profile, and where its instance database is."""

    env: dict[str, str]
    dagster_db: str

    def run(self, args: list[str]) -> str:
        done = subprocess.run(args, cwd=PROJECT_ROOT, env=self.env, capture_output=True, text=True)
        assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
        return done.stdout

    @property
    def aws(self) -> dict[str, str]:
        """The S3 settings alone: what reading the lake back needs."""
        return {k: v for k, v in self.env.items() if k.startswith("AWS_")}

    def instance(self) -> dg.DagsterInstance:
        """The production instance, read from the test process (same env, same Postgres)."""
        with environment(self.env):
            return dg.DagsterInstance.get()


@contextmanager
def environment(settings: dict[str, str]) -> Iterator[None]:
    """`settings` in this process's environment for the block, then as they were."""
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def create_databases(base_url: str, names: tuple[str, ...]) -> dict[str, str]:
    engine = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        for name in names:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return {name: base_url.rsplit("/", 1)[0] + f"/{name}" for name in names}


def start_in_own_group(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            args,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the whole group (make, the wrappers and the celery processes), then SIGKILL."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def wait_for_workers(workers: subprocess.Popen, env: dict[str, str], log: Path) -> None:
    """Both workers answer a ping through the broker (a worker is ready in a few seconds)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and workers.poll() is None:
        ping = subprocess.run(
            [str(BIN / "celery"), "-b", env["LAKEHOUSE_CELERY_BROKER"], "inspect", "ping"],
            capture_output=True,
            text=True,
        )
        if "cpu@" in ping.stdout and "gpu@" in ping.stdout:
            return
        time.sleep(1)
    raise AssertionError(f"workers not ready:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("production")
    with (
        postgres_server() as postgres,
        s3_server(("sources-bucket", "lake-bucket", "dagster-logs")) as endpoint,
        redis_server() as broker,
    ):
        databases = create_databases(postgres, ("dagster", "metadata"))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("LAKEHOUSE_", "DAGSTER"))},
            **aws_settings(endpoint),
            "LAKEHOUSE_ENV": "production",
            "DAGSTER_HOME": str(root / "dagster-home"),
            "LAKEHOUSE_DAGSTER_PG_URL": databases["dagster"],
            "LAKEHOUSE_METADATA_DB": databases["metadata"],
            "LAKEHOUSE_SOURCES": "s3://sources-bucket/world",
            "LAKEHOUSE_LAKE": "s3://lake-bucket/lake",
            "LAKEHOUSE_CELERY_BROKER": broker,
            "LAKEHOUSE_MAX_CONCURRENT_RUNS": "4",
            "LAKEHOUSE_COMPUTE_LOGS_BUCKET": "dagster-logs",
            "CPU_WORKER_CONCURRENCY": "2",
        }
        deployed = Deployment(env, databases["dagster"])
        deployed.run(["make", "--no-print-directory", "instance"])
        world = {**WORLD, "days": 8}
        deployed.run(
            [str(BIN / "lakehouse"), "demo-data"]
            + [f"--{name}={value}" for name, value in world.items()]
        )
        log = root / "workers.log"
        workers = start_in_own_group(["make", "--no-print-directory", "workers"], env, log)
        try:
            wait_for_workers(workers, env, log)
            yield deployed
        finally:
            stop_group(workers)


def step_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Which Celery worker executed each step of a run (from its engine events)."""
    found = {}
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = record.dagster_event
        metadata = event.engine_event_data.metadata if event else {}
        if "Celery worker" in metadata:
            found[event.step_key] = metadata["Celery worker"].value
    return found


def expected_events(sources: str) -> pl.DataFrame:
    store = ObjectStoreResource(uri=sources)
    return pl.concat(
        parse_log_day(store.read(log_key(day)), log_key(day), date.fromisoformat(day)).events
        for day in DAYS
    )


def wait_for_runs(instance: dg.DagsterInstance, tag: str, count: int) -> list[dg.RunRecord]:
    deadline = time.monotonic() + RUN_WAIT_S
    while time.monotonic() < deadline:
        records = instance.get_run_records(dg.RunsFilter(tags={"lakehouse/test": tag}))
        if len(records) == count and all(r.dagster_run.is_finished for r in records):
            return records
        time.sleep(2)
    raise AssertionError(f"runs tagged {tag} did not finish: {records}")


STEP_EVENTS = {
    dg.DagsterEventType.STEP_START,
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
}


def step_intervals(instance: dg.DagsterInstance, run_id: str) -> list[tuple[float, float]]:
    """When each step of a run executed: its start event to its success or failure event,
    both written by the worker that ran it."""
    started, intervals = {}, []
    for entry in instance.all_logs(run_id, of_type=STEP_EVENTS):
        if entry.dagster_event_type == dg.DagsterEventType.STEP_START:
            started[entry.step_key] = entry.timestamp
        elif entry.step_key in started:
            intervals.append((started.pop(entry.step_key), entry.timestamp))
    return intervals


def most_at_once(intervals: dict[str, list[tuple[float, float]]]) -> int:
    """The largest number of runs that had a step executing at one moment (a step's end
    before another's start at the same instant: no overlap claimed on a tie)."""
    edges = sorted(
        (moment, step, run)
        for run, spans in intervals.items()
        for start, end in spans
        for moment, step in ((start, 1), (end, -1))
    )
    running: dict[str, int] = {}
    peak = 0
    for _, step, run in edges:
        running[run] = running.get(run, 0) + step
        peak = max(peak, sum(1 for count in running.values() if count > 0))
    return peak


INSTIGATOR = re.compile(r"^(Sensor|Schedule): (\S+) \[RUNNING\]", re.MULTILINE)


@contextmanager
def code_server(deployment: Deployment, log: Path) -> Iterator[list[str]]:
    """One gRPC code server for the CLI calls and the daemon (each would start its own):
    yields the arguments that point a `dagster` command at it."""
    port = str(free_port())
    server = start_in_own_group(
        [str(BIN / "dagster"), "api", "grpc", "-m", "lakehouse.definitions"]
        + ["--host", "127.0.0.1", "--port", port],
        deployment.env,
        log,
    )
    target = ["--grpc-host", "127.0.0.1", "--grpc-port", port]
    try:
        deadline = time.monotonic() + 120
        health = [str(BIN / "dagster"), "api", "grpc-health-check", "-h", "127.0.0.1", "-p", port]
        while subprocess.run(health, env=deployment.env, capture_output=True).returncode:
            assert server.poll() is None, f"code server exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"code server not up:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        yield target
    finally:
        stop_group(server)


def pause_instigators(deployment: Deployment, target: list[str]) -> list[str]:
    """Stop every running sensor and schedule, as an operator does before a backfill that
    must run alone: otherwise automation starts runs of its own on the backfilled days, and
    stopping the daemon kills them half way (they end 'marked as failed from outside the
    execution context'). Returns what was stopped."""
    stopped = []
    for kind in ("sensor", "schedule"):
        listed = deployment.run([str(BIN / "dagster"), kind, "list", *target])
        for found in INSTIGATOR.finditer(listed):
            deployment.run([str(BIN / "dagster"), kind, "stop", found.group(2), *target])
            stopped.append(found.group(2))
    return stopped


def test_seven_log_days_backfill_concurrently(deployment: Deployment, tmp_path: Path) -> None:
    env = deployment.env  # the workers' environment: the lake they write
    tag = uuid.uuid4().hex
    with contextlib.ExitStack() as stack:
        target = stack.enter_context(code_server(deployment, tmp_path / "code-server.log"))
        stopped = pause_instigators(deployment, target)
        assert {"automation", "observe_logs_schedule"} <= set(stopped), stopped
        daemon = start_in_own_group(
            [str(BIN / "dagster-daemon"), "run", *target],
            env,
            tmp_path / "daemon.log",
        )
        stack.callback(stop_group, daemon)
        deployment.run(
            [str(BIN / "dagster"), "job", "backfill", *target]
            + ["-j", "backfill_logs", "--partitions", ",".join(DAYS), "--noprompt"]
            + ["--tags", json.dumps({"lakehouse/test": tag})]
        )
        records = wait_for_runs(deployment.instance(), tag, len(DAYS))
        launched = deployment.instance().get_run_records()
        assert {r.dagster_run.run_id for r in launched} == {r.dagster_run.run_id for r in records}

    instance = deployment.instance()
    runs_succeeded(
        instance,
        [r.dagster_run for r in records],
        "daemon log:\n" + (tmp_path / "daemon.log").read_text()[-3000:],
    )
    assert sorted(r.dagster_run.tags["dagster/partition"] for r in records) == DAYS
    steps = {r.dagster_run.run_id: step_intervals(instance, r.dagster_run.run_id) for r in records}
    assert all(steps.values()), f"runs without step events: {steps}"
    at_once = most_at_once(steps)
    assert 2 <= at_once <= int(env["LAKEHOUSE_MAX_CONCURRENT_RUNS"]), (
        f"at most {at_once} runs had a step executing at one moment: {steps}"
    )
    lake = LakeResource(root=env["LAKEHOUSE_LAKE"])
    with environment(deployment.aws):
        events = lake.read("raw_events")
        expected = expected_events(env["LAKEHOUSE_SOURCES"])
        writers = {
            commit.get("dagster_run_id")
            for commit in lake.open("raw_events").history()
            if commit.get("operation") != "CREATE TABLE"
        }
    key = ["day", "line"]
    assert events.height == expected.height
    assert events.select(expected.columns).sort(key).equals(expected.sort(key))
    assert writers == {r.dagster_run.run_id for r in records}


def test_full_materialization_in_the_production_profile(deployment: Deployment) -> None:
    before = {r.dagster_run.run_id for r in deployment.instance().get_run_records()}
    deployment.run(
        ["make", "--no-print-directory", "materialize", f"EXECUTION={json.dumps(RUN_CONFIG)}"]
    )

    instance = deployment.instance()
    assert instance.run_storage.__class__.__name__ == "PostgresRunStorage"
    stored_before = len(before)
    records = [r for r in instance.get_run_records() if r.dagster_run.run_id not in before]
    assert {r.dagster_run.job_name for r in records} >= {"observe_all", "__ASSET_JOB"}
    runs_succeeded(instance, [r.dagster_run for r in records], "make materialize")
    engine = sa.create_engine(deployment.dagster_db)
    with engine.connect() as db:
        stored_runs = db.execute(sa.text("SELECT count(*) FROM runs")).scalar_one()
        materialized = {
            row[0]
            for row in db.execute(
                sa.text(
                    "SELECT DISTINCT asset_key FROM event_logs "
                    "WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
                )
            )
        }
    engine.dispose()
    assert stored_runs == stored_before + len(records)

    lake = LakeResource(root=deployment.env["LAKEHOUSE_LAKE"])
    asset_run = next(r for r in records if r.dagster_run.job_name == "__ASSET_JOB")
    counts = {}
    for event in instance.get_records_for_run(
        asset_run.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records:
        materialization = event.asset_materialization
        counts[materialization.asset_key.to_user_string()] = materialization.metadata[
            "dagster/row_count"
        ].value
    assert {json.loads(key)[0] for key in materialized} >= set(counts)
    assert set(counts) >= {"raw_events", "images", "photo_classes", "training_set"}
    with environment(deployment.aws):
        assert set(lake.table_names()) >= set(counts)
        for name, rows in counts.items():
            assert DeltaTable(lake.table_uri(name), storage_options=lake.storage_options())
            assert lake.row_count(name) == rows, name

    workers = step_workers(instance, asset_run.dagster_run.run_id)
    assert set(workers) >= set(counts)
    for step, worker in workers.items():
        queue = "gpu" if step in GPU_STEPS else "cpu"
        assert worker.startswith(f"{queue}@"), (step, worker)


def upsert_many(
    root: str,
    env: dict[str, str],
    writer: int,
    commits: int,
    start: multiprocessing.synchronize.Barrier,
    log: str,
) -> None:
    """One writer process: `commits` merges of its own keys into the shared table, each
    begun together with the other writer's; the lake's log (each conflict it retried)
    goes to `log`. The first merge creates the table: both writers wait for each other
    at `create/shared`, where each has found it missing, so one must meet the conflict."""
    os.environ.update(env)
    lake_log = logging.getLogger("lakehouse.lake")
    lake_log.addHandler(logging.FileHandler(log))
    lake_log.setLevel(logging.INFO)
    lake = LakeResource(root=root)
    with failpoints.on("create/shared", lambda: start.wait(timeout=120)):
        for n in range(commits):
            start.wait(timeout=120)
            rows = pl.DataFrame({"id": [writer * 1000 + n], "writer": [writer], "n": [n]})
            lake.upsert("shared", rows, key=["id"], commit_info={"writer": str(writer)})


def test_two_concurrent_writers_to_one_s3_table(deployment: Deployment, tmp_path: Path) -> None:
    root, commits = "s3://lake-bucket/concurrent", 12
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(2)
    logs = {writer: tmp_path / f"writer-{writer}.log" for writer in (1, 2)}
    writers = {
        writer: spawn.Process(
            target=upsert_many,
            args=(root, deployment.aws, writer, commits, start, str(log)),
        )
        for writer, log in logs.items()
    }
    for process in writers.values():
        process.start()
    for writer, process in writers.items():
        process.join(timeout=300)
        assert process.exitcode == 0, f"writer {writer}: exit code {process.exitcode} (above)"

    lake = LakeResource(root=root)
    with environment(deployment.aws):
        table = lake.open("shared")
        rows = lake.read("shared")
        history = table.history()
    assert rows.height == 2 * commits and rows["id"].n_unique() == 2 * commits
    assert rows.group_by("writer").len().sort("writer")["len"].to_list() == [commits, commits]
    assert table.version() == 2 * commits - 1
    assert len(history) == 2 * commits
    retried = {
        writer: log.read_text().count("commit to 'shared' conflicted with a concurrent writer")
        for writer, log in logs.items()
    }
    assert sum(retried.values()) >= 1, f"no commit conflicted (retries per writer: {retried})"


def test_the_production_profile_names_every_missing_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (*PRODUCTION_VARS, CELERY_BROKER_VAR, EXECUTOR_VAR):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(ENV_VAR, "production")
    with pytest.raises(ConfigError) as missing:
        default_executor()
    monkeypatch.setenv(ENV_VAR, "staging")
    with pytest.raises(ConfigError) as unknown:
        default_executor()

    assert str(missing.value).startswith(
        "LAKEHOUSE_ENV=production needs these variables set: LAKEHOUSE_SOURCES, "
        "LAKEHOUSE_METADATA_DB, LAKEHOUSE_LAKE, LAKEHOUSE_CELERY_BROKER"
    )
    assert str(unknown.value) == "LAKEHOUSE_ENV='staging': expected one of local, production"

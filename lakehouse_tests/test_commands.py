"""The command surface, run as a user would: dagster's CLI and ours, in subprocesses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from lakehouse.definitions import build_definitions
from lakehouse.errors import ConfigError
from lakehouse.lake import LakeResource
from lakehouse.resources import MetadataDbResource, ObjectStoreResource
from lakehouse.settings import masked
from lakehouse_tests.conftest import project_instance

pytestmark = pytest.mark.foundation

BIN = Path(sys.executable).parent


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def project_env(tmp_path: Path, pristine_world: Path) -> tuple[dict[str, str], Path]:
    """An instance dir holding the project's dagster.yaml, and a private world and lake."""
    home = tmp_path / "home"
    home.mkdir()
    project_instance(home)
    shutil.copytree(pristine_world, tmp_path / "sources")
    env = {
        "DAGSTER_HOME": str(home),
        "LAKEHOUSE_SOURCES": str(tmp_path / "sources"),
        "LAKEHOUSE_METADATA_DB": f"sqlite:///{tmp_path / 'sources' / 'metadata.db'}",
        "LAKEHOUSE_LAKE": str(tmp_path / "lake"),
    }
    return env, home


@pytest.mark.slow
def test_dagster_cli_materializes_everything_then_nothing(project_env) -> None:
    env, home = project_env
    dagster = [str(BIN / "dagster")]
    module = ["-m", "lakehouse.definitions"]
    done = run([*dagster, "job", "execute", *module, "-j", "observe_all"], env, home)
    assert done.returncode == 0, done.stderr[-3000:]
    days = run([str(BIN / "lakehouse"), "log-range"], env, home)
    assert days.stdout.strip() == "2026-10-01...2026-10-06"
    materialize = [*dagster, "asset", "materialize", *module, "--select", "*"]
    materialize += ["--partition-range", days.stdout.strip()]
    # one process for all steps: the same code path, without a subprocess per step
    materialize += ["--config-json", '{"execution": {"config": {"in_process": {}}}}']
    first = run(materialize, env, home)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (home / "data" / "dagster").is_dir(), "instance storage lives under data/"

    tables = run([str(BIN / "lakehouse"), "tables"], env, home)
    lines = {line.split()[0]: line.split() for line in tables.stdout.splitlines()[1:]}
    assert {"raw_objects", "raw_photos", "raw_events", "quarantine"} <= set(lines)
    versions = {name: fields[2] for name, fields in lines.items()}

    second = run(materialize, env, home)
    assert second.returncode == 0, second.stderr[-3000:]
    again = run([str(BIN / "lakehouse"), "tables"], env, home)
    assert {line.split()[0]: line.split()[2] for line in again.stdout.splitlines()[1:]} == versions


def test_demo_data_command_writes_the_world(tmp_path: Path) -> None:
    done = run(
        [
            str(BIN / "lakehouse"),
            "demo-data",
            "--photos",
            "12",
            "--users",
            "3",
            "--days",
            "4",
            "--out",
            str(tmp_path / "w"),
        ],
        {},
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "w" / "metadata.db").is_file()
    assert len(list((tmp_path / "w" / "logs").iterdir())) == 4


def test_missing_sources_name_the_variable(tmp_path: Path) -> None:
    env = {"LAKEHOUSE_SOURCES": str(tmp_path / "nowhere")}
    done = run([str(BIN / "lakehouse"), "log-range"], env, tmp_path)
    assert done.returncode == 1
    assert "LAKEHOUSE_SOURCES" in done.stderr and "nowhere" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(ConfigError, match="LAKEHOUSE_SOURCES=.*nowhere.*no such directory"):
        ObjectStoreResource(uri=str(tmp_path / "nowhere")).list("photos/")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not a SQLAlchemy URL"),
        ("sqlite:////nonexistent/dir/metadata.db", "no SQLite database"),
        ("postgresql+psycopg2://user:hunter2@127.0.0.1:1/db", "cannot read table"),
    ],
)
def test_bad_metadata_db_url_names_the_variable(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        MetadataDbResource(url=url).read_table("photos")
    said = str(caught.value)
    assert said.startswith(f"LAKEHOUSE_METADATA_DB={masked(url)!r}"), said
    assert len(said.splitlines()) == 1, said
    assert "hunter2" not in said, "passwords never reach an error message"
    if "hunter2" in url:
        assert "user:***@127.0.0.1" in said, "the password is masked, the rest of the URL kept"


def test_unwritable_lake_names_the_variable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="LAKEHOUSE_LAKE=.*cannot be written"):
        LakeResource(root=str(blocker / "lake")).ensure_writable()


def test_a_failing_run_says_which_setting_is_wrong(tmp_path: Path, pristine_world: Path) -> None:
    defs = build_definitions(
        lake=str(tmp_path / "lake"),
        sources=str(tmp_path / "missing"),
        metadata_db=f"sqlite:///{pristine_world / 'metadata.db'}",
    )
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("raw_objects")}
    )
    result = job.execute_in_process(raise_on_error=False)
    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    error = failure.event_specific_data.error
    message = (error.cause or error).message  # a ConfigError is the failure itself: no retry
    said = f"LAKEHOUSE_SOURCES={str(tmp_path / 'missing')!r}: no such directory (run `lakehouse"
    (line,) = message.strip().splitlines()  # one line, naming the variable and its value
    assert said in line, message

"""The house rules, checked as a user or CI would run them: the import layering holds and
a back-edge breaks it, `dg` sees every definition, the documented CLI materializes, and
no module reaches into Dagster's private API."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from lakehouse.definitions import defs
from lakehouse.demo.world import generate_world
from lakehouse.lake.resource import LakeResource
from lakehouse.settings import PROJECT_ROOT
from lakehouse_tests.conftest import RAW_LAYER, project_instance
from lakehouse_tests.servers.need import need

pytestmark = pytest.mark.house

BIN = Path(sys.executable).parent
PACKAGE = PROJECT_ROOT / "lakehouse"
DAYS = "2026-10-01...2026-10-03"
IN_PROCESS = '{"execution": {"config": {"in_process": {}}}}'
LAYERS = "Layers: a module imports only from the layers below its own"
PURE_LOGIC = "Pure logic does not import Dagster"
ACYCLIC = "No import cycles between sibling packages or modules"


def tool(name: str) -> str:
    """The console script beside this Python (else on PATH); under CI a missing one fails."""
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    if found is None:
        need(f"`{name}` is not installed", "pip install -e '.[dev]' (`make test` does)")
    return str(found)


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """`args` in `cwd`, importing the lakehouse package found there."""
    return subprocess.run(
        args,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(cwd), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_import_contracts_hold() -> None:
    done = run([tool("lint-imports"), "--no-cache"], PROJECT_ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    for contract in (LAYERS, PURE_LOGIC, ACYCLIC):
        assert f"{contract} KEPT" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract", "violation"),
    [
        (
            "raw/checks.py",
            "import lakehouse.cli",
            LAYERS,
            "lakehouse.raw.checks -> lakehouse.cli",
        ),
        (
            "vocabulary.py",
            "import dagster",
            PURE_LOGIC,
            "lakehouse.vocabulary -> dagster",
        ),
        (
            "cli/output.py",
            "import lakehouse.cli.main",
            ACYCLIC,
            "No cycles are allowed in lakehouse.cli.",
        ),
    ],
    ids=["back-edge", "dagster-in-pure-logic", "cycle"],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str, violation: str
) -> None:
    """The contracts can fail: one forbidden import in a copy of the package breaks the
    contract that forbids it, and the report names the import."""
    shutil.copytree(PACKAGE, tmp_path / "lakehouse", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "lakehouse" / module).open("a") as source:
        source.write(f"\n{line}  # noqa\n")
    done = run([tool("lint-imports"), "--no-cache"], tmp_path)
    assert done.returncode != 0
    assert f"{contract} BROKEN" in done.stdout
    broken = done.stdout.split("Broken contracts", 1)[1]
    assert violation in broken.split(contract, 1)[1], done.stdout[-4000:]


def test_no_module_imports_dagster_private_api() -> None:
    private = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            private += [
                f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {name}"
                for name in names
                if name.startswith("dagster") and any(p.startswith("_") for p in name.split("."))
            ]
    assert not private, private


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Three days of a small world, a lake and an instance directory, as the environment
    a user's shell would hold."""
    root = tmp_path_factory.mktemp("house")
    sources, home = root / "sources", root / "home"
    sources.mkdir()
    home.mkdir()
    project_instance(home)  # the commands run from the project root (dg reads its pyproject)
    db = f"sqlite:///{sources / 'metadata.db'}"
    generate_world(sources, db, photos=12, users=4, days=3, seed=5)
    return {
        "DAGSTER_HOME": str(home),
        "LAKEHOUSE_SOURCES": str(sources),
        "LAKEHOUSE_METADATA_DB": db,
        "LAKEHOUSE_LAKE": str(root / "lake"),
    }


def test_dg_checks_and_lists_every_definition(small_world: dict[str, str]) -> None:
    dg_cli = tool("dg")
    checked = run([dg_cli, "check", "defs"], PROJECT_ROOT, **small_world)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert "All definitions loaded successfully" in checked.stdout

    listed = run([dg_cli, "list", "defs", "--json"], PROJECT_ROOT, **small_world)
    assert listed.returncode == 0, listed.stderr[-3000:]
    found = json.loads(listed.stdout)
    graph = defs.resolve_asset_graph()
    repository = defs.get_repository_def()
    expected = {
        "assets": {key.to_user_string() for key in graph.get_all_asset_keys()},
        "asset_checks": {key.to_user_string() for key in graph.asset_check_keys},
        "jobs": {job.name for job in defs.jobs or ()},
        "schedules": {schedule.name for schedule in repository.schedule_defs},
        "sensors": {sensor.name for sensor in repository.sensor_defs},
    }
    listed_names = {
        "assets": {asset["asset_key"] for asset in found["assets"]},
        "asset_checks": {check["key"] for check in found["asset_checks"]},
        **{kind: {item["name"] for item in found[kind]} for kind in ("jobs", "schedules")},
        "sensors": {sensor["name"] for sensor in found["sensors"]},
    }
    assert listed_names == expected
    assert all(expected.values()), "the project defines at least one of each"


@pytest.mark.slow
def test_the_cli_materializes_the_raw_layer_over_a_range_of_days(
    small_world: dict[str, str],
) -> None:
    """The command users' CI calls, then `dg launch` for one partitioned asset downstream."""
    materialize = [tool("dagster"), "asset", "materialize", "-m", "lakehouse.definitions"]
    materialize += ["--select", ",".join(sorted(RAW_LAYER)), "--partition-range", DAYS]
    done = run([*materialize, "--config-json", IN_PROCESS], PROJECT_ROOT, **small_world)
    assert done.returncode == 0, done.stderr[-4000:]

    launch = [tool("dg"), "launch", "--assets", "user_activity", "--partition-range", DAYS]
    launched = run([*launch, "--config-json", IN_PROCESS], PROJECT_ROOT, **small_world)
    assert launched.returncode == 0, launched.stderr[-4000:]

    lake = LakeResource(root=small_world["LAKEHOUSE_LAKE"])
    rows = {
        name: DeltaTable(lake.table_uri(name)).to_pyarrow_table().num_rows
        for name in {*RAW_LAYER, "user_activity"}
    }
    assert all(count > 0 for count in rows.values()), rows
    days = DeltaTable(lake.table_uri("raw_events")).to_pyarrow_table(columns=["day"])
    assert {str(day) for day in days.column("day").to_pylist()} == {
        "2026-10-01",
        "2026-10-02",
        "2026-10-03",
    }

"""Shared fixtures: a small synthetic world and a harness that runs the real assets."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from lakehouse.definitions import build_definitions
from lakehouse.demo.world import generate_world
from lakehouse.graph.partitions import partition_range_tags
from lakehouse.lake import LakeResource
from lakehouse.settings import PROJECT_ROOT
from lakehouse_tests.delta_counts import versions
from lakehouse_tests.hostile import pytest_terminal_summary  # noqa: F401  (the hostile-input table)
from lakehouse_tests.runs import succeeded
from lakehouse_tests.servers.need import skip_without_gpu
from lakehouse_tests.servers.policy import (  # noqa: F401  (under CI=true only `gpu` tests skip)
    pytest_make_collect_report,
    pytest_runtest_makereport,
)
from lakehouse_tests.servers.postgres import fresh_database, postgres_server
from lakehouse_tests.servers.s3 import fresh_bucket, s3_server

pytest_plugins = ["lakehouse_tests.guarantees"]  # README Guarantees ran; the checkout unchanged

SOURCE_KEYS = ("photo_objects", "metadata_db", "activity_logs", "activity_log_days")
RAW_LAYER = frozenset(
    {"raw_objects", "raw_users", "raw_photos", "raw_photo_labels", "raw_events", "quarantine"}
)
EVERYTHING = frozenset({"*"})
WORLD = {"photos": 40, "users": 8, "days": 6, "seed": 7}
FIRST_DAY, LAST_DAY = "2026-10-01", "2026-10-06"


def project_instance(home: Path) -> Path:
    """Make `home` a Dagster instance directory with the project's dagster.yaml, its storage
    paths (relative: resolved against the cwd) made absolute under `home`, so a process
    started elsewhere, the test's own included, reads and writes that instance and never
    `data/dagster` of the checkout."""
    home.mkdir(parents=True, exist_ok=True)
    config = (PROJECT_ROOT / "dagster.yaml").read_text()
    (home / "dagster.yaml").write_text(
        config.replace("base_dir: data/dagster", f"base_dir: {home}/data/dagster")
    )
    return home


@dataclass
class Lakehouse:
    """A source world, a lake and a Dagster instance, driven like a user would."""

    sources: Path
    lake: Path
    instance: dg.DagsterInstance = field(default_factory=dg.DagsterInstance.ephemeral)

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.sources / 'metadata.db'}"

    @property
    def lake_resource(self) -> LakeResource:
        return LakeResource(root=str(self.lake))

    def definitions(self) -> dg.Definitions:
        return build_definitions(
            lake=str(self.lake), sources=str(self.sources), metadata_db=self.db_url
        )

    def observe(self) -> dg.ExecuteInProcessResult:
        """Observe every source, as the `observe_all` job does (`make materialize`)."""
        result = (
            self.definitions()
            .resolve_job_def("observe_all")
            .execute_in_process(instance=self.instance)
        )
        succeeded(result, "observe_all")
        return result

    def materialize(
        self,
        first: str = FIRST_DAY,
        last: str = LAST_DAY,
        select: set[str] | frozenset[str] = RAW_LAYER,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        """Materialize `select` (the raw layer by default, EVERYTHING for the whole graph)
        over a range of log days, in one run."""
        defs = self.definitions()
        keys = {
            key
            for key in defs.resolve_asset_graph().get_all_asset_keys()
            if key.path[0] not in SOURCE_KEYS and (select == EVERYTHING or key.path[0] in select)
        }
        job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=keys)
        result = job.execute_in_process(
            instance=self.instance,
            tags=partition_range_tags(first, last),
            raise_on_error=raise_on_error,
        )
        if raise_on_error:
            succeeded(result, f"materializing {sorted(select)} over {first}..{last}")
        return result

    def table_versions(self) -> dict[str, int | None]:
        return versions(self.lake_resource)


def materializations(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    """Per asset: its reported data version and metadata values (last event wins)."""
    found = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        found[event.asset_key.to_user_string()] = {
            "data_version": materialization.tags.get("dagster/data_version"),
            **{key: value.value for key, value in materialization.metadata.items()},
        }
    return found


DEMO_FIRST, DEMO_LAST = "2026-10-01", "2026-10-20"
UPSTREAM_ASSETS = {
    "raw_objects",
    "raw_users",
    "raw_photos",
    "raw_photo_labels",
    "raw_events",
    "quarantine",
    "images",
    "augmented_tensors",
    "style_content_classifier",
    "photo_classes",
}
FEATURE_ASSETS = {
    "user_activity",
    "photo_features",
    "popularity_labels",
    "training_set",
    "popularity_model",
}


@dataclass
class DemoLake:
    """A default-size world materialized end to end, and a copy taken before the features."""

    lakehouse: Lakehouse
    upstream: Path
    upstream_found: dict[str, dict]
    found: dict[str, dict]
    result: dg.ExecuteInProcessResult


@pytest.fixture(scope="session")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> DemoLake:
    """400 photos, 40 users, 20 days through popularity_model: built once, read by many."""
    root = tmp_path_factory.mktemp("demo-lake")
    sources = root / "sources"
    sources.mkdir()
    generate_world(sources, f"sqlite:///{sources / 'metadata.db'}", photos=400, users=40, days=20)
    lakehouse = Lakehouse(sources=sources, lake=root / "lake")
    upstream = lakehouse.materialize(DEMO_FIRST, DEMO_LAST, select=UPSTREAM_ASSETS)
    shutil.copytree(lakehouse.lake, root / "upstream")
    result = lakehouse.materialize(DEMO_FIRST, DEMO_LAST, select=FEATURE_ASSETS)
    return DemoLake(
        lakehouse, root / "upstream", materializations(upstream), materializations(result), result
    )


@pytest.fixture(scope="session")
def pristine_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic world, generated once per session; tests copy it before changing it."""
    sources = tmp_path_factory.mktemp("world") / "sources"
    sources.mkdir()
    generate_world(sources, f"sqlite:///{sources / 'metadata.db'}", **WORLD)
    return sources


@pytest.fixture
def lakehouse(tmp_path: Path, pristine_world: Path) -> Lakehouse:
    """A private copy of the world and an empty lake."""
    sources = tmp_path / "sources"
    shutil.copytree(pristine_world, sources)
    return Lakehouse(sources=sources, lake=tmp_path / "lake")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[str]:
    """One PostgreSQL server per session (per xdist worker): an initdb costs seconds. Its
    base URL; a test takes a database of its own through `postgres_db`."""
    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_db(postgres_cluster: str) -> Iterator[str]:
    """A fresh, empty database on the session's server, dropped after the test."""
    with fresh_database(postgres_cluster) as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One moto S3 server per session (per xdist worker); tests take a bucket each through
    `s3_bucket`. Tests that stop their server on purpose start their own."""
    with s3_server(()) as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket on the session's S3 server."""
    return fresh_bucket(s3_endpoint)


@pytest.fixture(scope="session")
def cuda() -> None:
    """For `gpu` tests: skip where CUDA is absent (CI too), before any costlier fixture is
    built (session scope comes first). A test not marked `gpu` using it fails under CI."""
    import torch

    if not torch.cuda.is_available():
        skip_without_gpu("CUDA is not available to torch")

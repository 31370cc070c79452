"""The project's shape: one Definitions with the contract's names, a valid instance config."""

from __future__ import annotations

import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml

from lakehouse.definitions import defs
from lakehouse.settings import PROJECT_ROOT

pytestmark = pytest.mark.foundation

RAW_ASSETS = {
    "raw_objects",
    "raw_photos",
    "raw_users",
    "raw_photo_labels",
    "raw_events",
    "quarantine",
}
SOURCES = {"photo_objects", "metadata_db", "activity_logs", "activity_log_days"}
LAYERS = {
    "curated": {"images", "augmented_tensors", "user_activity"},
    "features": {"photo_features", "popularity_labels", "training_set"},
    "models": {"style_content_classifier", "photo_classes", "popularity_model"},
    "labels": {"label_queue", "weak_labels"},
}


def test_definitions_hold_the_contract_names_in_their_layers() -> None:
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert {name for name, group in groups.items() if group == "sources"} == SOURCES
    assert {name for name, group in groups.items() if group == "raw"} == RAW_ASSETS
    for layer, names in LAYERS.items():
        assert {name for name, group in groups.items() if group == layer} == names
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_materializable:
            assert node.code_version, f"{key} has no code_version"
            assert node.backfill_policy == dg.BackfillPolicy.single_run()
        else:
            assert node.is_observable, f"{key} is a source that is not observed"
    assert graph.get(dg.AssetKey("raw_events")).partitions_def is not None
    for name in SOURCES:
        source = graph.get(dg.AssetKey(name))
        assert source.owners and source.kinds and source.description, f"{name} is anonymous"
    assert graph.get(dg.AssetKey("activity_logs")).partitions_def is not None


def test_dagster_yaml_is_a_valid_instance_with_storage_under_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the storage path is relative: it lands here, not in the checkout
    config = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    assert config["storage"]["sqlite"]["base_dir"].startswith("data/")
    assert config["concurrency"]["pools"]["default_limit"] == 1
    (tmp_path / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=config) as instance:
        assert instance.run_coordinator.__class__.__name__ == "QueuedRunCoordinator"


def test_workspace_and_console_script() -> None:
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    assert workspace["load_from"] == [{"python_module": "lakehouse.definitions"}]
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["lakehouse"] == "lakehouse.cli:run"
    pins = set(project["dependencies"])
    assert {
        "dagster==1.13.27",
        "dagster-webserver==1.13.27",
        "dagster-dg-cli==1.13.27",
        "torch==2.14.1",
        "duckdb==1.5.5",
    } <= pins
    assert "import-linter==2.16" in project["optional-dependencies"]["dev"]


def test_dg_sees_one_project_whose_code_location_is_the_definitions() -> None:
    tool = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]
    assert tool["dg"]["directory_type"] == "project"
    assert tool["dg"]["project"]["root_module"] == "lakehouse"
    assert tool["dg"]["project"]["code_location_target_module"] == "lakehouse.definitions"

"""The UI explains the lake: a real `dagster-webserver`, asked over GraphQL what it shows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

from lakehouse_tests.conftest import Lakehouse
from lakehouse_tests.servers.browser import CHROMIUM, require_chromium
from lakehouse_tests.servers.dagster_web import graphql
from lakehouse_tests.servers.postgres import free_port

pytestmark = pytest.mark.query

BIN = Path(sys.executable).parent
STARTUP_S = 90
RAW_ASSETS = {"raw_objects", "raw_users", "raw_photos", "raw_photo_labels", "raw_events"}
TABLE_ENTRIES = {"dagster/column_schema", "dagster/row_count", "delta_version", "uri", "preview"}

ASSET_NODES = """
query AssetNodes {
  assetNodes {
    assetKey { path }
    groupName
    description
    owners {
      ... on TeamAssetOwner { team }
      ... on UserAssetOwner { email }
    }
    kinds
    isObservable
    assetMaterializations(limit: 1) {
      metadataEntries { label __typename }
    }
  }
}
"""


@pytest.fixture
def ui_world(tmp_path: Path, pristine_world: Path) -> tuple[Lakehouse, Path]:
    """The small world, its raw layer materialized into a real (on-disk) Dagster instance."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    sources = tmp_path / "sources"
    shutil.copytree(pristine_world, sources)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        lakehouse = Lakehouse(sources=sources, lake=tmp_path / "lake", instance=instance)
        lakehouse.materialize(select=RAW_ASSETS | {"quarantine"})
    return lakehouse, home


@contextmanager
def running_webserver(home: Path, env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """`dagster-webserver` on loopback over the instance in `home`; always stopped."""
    port = free_port()
    log = home / "webserver.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)]
            + ["-m", "lakehouse.definitions"],
            env={**os.environ, **env, "DAGSTER_HOME": str(home)},
            cwd=home,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert server.poll() is None, f"webserver exited:\n{log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, f"webserver not up:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield url, log
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)


@pytest.fixture
def webserver(ui_world: tuple[Lakehouse, Path]) -> Iterator[tuple[str, Path]]:
    """The webserver over that instance and world."""
    lakehouse, home = ui_world
    env = {
        "LAKEHOUSE_LAKE": str(lakehouse.lake),
        "LAKEHOUSE_SOURCES": str(lakehouse.sources),
        "LAKEHOUSE_METADATA_DB": lakehouse.db_url,
    }
    with running_webserver(home, env) as running:
        yield running


def loaded_asset_nodes(url: str, expected: set[str], log: Path) -> dict[str, dict]:
    """The asset nodes, once the code location has loaded (the server answers before)."""
    deadline = time.monotonic() + STARTUP_S
    while True:
        nodes = {
            "/".join(n["assetKey"]["path"]): n
            for n in graphql(url, ASSET_NODES, timeout=30)["assetNodes"]
        }
        if expected <= set(nodes):
            return nodes
        assert time.monotonic() < deadline, (
            f"missing from the UI: {sorted(expected - set(nodes))}\n{log.read_text()[-3000:]}"
        )
        time.sleep(1)


def test_ui_shows_every_asset_with_its_metadata(ui_world, webserver) -> None:
    lakehouse, _ = ui_world
    url, log = webserver
    graph = lakehouse.definitions().resolve_asset_graph()
    layers = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}

    nodes = loaded_asset_nodes(url, set(layers), log)

    for name, layer in layers.items():
        node = nodes[name]
        assert node["groupName"] == layer, name
        assert node["description"], f"{name} has no description"
        assert node["owners"], f"{name} has no owners"
        assert all(owner.get("team") or owner.get("email") for owner in node["owners"]), name
        assert node["kinds"], f"{name} has no kinds"
    assert {layers[name] for name in RAW_ASSETS} == {"raw"}
    assert {layers[name] for name in ("photo_objects", "metadata_db", "activity_logs")} == {
        "sources"
    }

    for name in RAW_ASSETS | {"quarantine"}:
        materializations = nodes[name]["assetMaterializations"]
        assert materializations, f"{name} has no materialization in the UI"
        entries = {e["label"]: e["__typename"] for e in materializations[0]["metadataEntries"]}
        assert set(entries) >= TABLE_ENTRIES, f"{name}: {sorted(entries)}"
        assert entries["dagster/column_schema"] == "TableSchemaMetadataEntry"
        assert entries["preview"] == "MarkdownMetadataEntry"
        assert entries["uri"] == "PathMetadataEntry"

    require_chromium()
    shot_path = log.parent / "ui-asset-graph.png"  # the test's temp dir, never the repo
    profile = log.parent / "chromium-profile"
    shot = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=20000",
            f"--screenshot={shot_path}",
            "--window-size=1400,900",
            f"{url}/asset-groups",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot_path.is_file() and shot_path.stat().st_size > 0, shot.stderr[-3000:]


def test_table_metadata_preview_is_short(tmp_path: Path) -> None:
    """Binary as sizes, long text cut, lists shortened; an absent table has no schema."""
    import polars as pl

    from lakehouse.lake import LakeResource, table_metadata

    lake = LakeResource(root=str(tmp_path / "lake"))
    assert "dagster/column_schema" not in table_metadata(lake, "nothing", 0, 0)
    rows = pl.DataFrame(
        {
            "id": list(range(8)),
            "blob": [b"\x00" * 1234] * 8,
            "text": ["x" * 200 + "|"] * 8,
            "items": [list(range(50))] * 8,
        }
    )
    lake.upsert("t", rows, ["id"], commit_info={"dagster_run_id": "test"})
    metadata = table_metadata(lake, "t", 8, 8)
    schema = metadata["dagster/column_schema"]
    assert [c.name for c in schema.columns] == ["id", "blob", "text", "items"]
    preview = metadata["preview"].value
    lines = preview.splitlines()
    assert len(lines) == 2 + 5
    assert "<1234 bytes>" in preview
    assert "x" * 41 not in preview
    assert "(50 items)" in preview
    assert metadata["delta_version"] == 0


def test_table_metadata_preview_reads_the_smallest_file_with_its_partition(
    tmp_path: Path,
) -> None:
    """The preview comes from the smallest data file (a big one is never decoded for
    five rows) and keeps the partition column, which lives in the folder names."""
    import polars as pl

    from lakehouse.lake import LakeResource, table_metadata

    lake = LakeResource(root=str(tmp_path / "lake"))
    info = {"dagster_run_id": "test"}
    big = pl.DataFrame({"id": list(range(500)), "day": ["2026-08-01"] * 500})
    small = pl.DataFrame({"id": [1000, 1001], "day": ["2026-08-02"] * 2})
    for rows, day in ((big, "2026-08-01"), (small, "2026-08-02")):
        lake.replace_partitions(
            "p", rows, values=[day], commit_info=info, key=["id"], partition_column="day"
        )
    lines = table_metadata(lake, "p", 502, 502)["preview"].value.splitlines()
    assert lines[0].replace(" ", "") == "|id|day|"
    assert [line.replace(" ", "") for line in lines[2:]] == [
        "|1000|2026-08-02|",
        "|1001|2026-08-02|",
    ]

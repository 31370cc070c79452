"""A rerun with nothing changed reads no rows of unchanged tables; any change recomputes.

Derived tables whose inputs' versions (and code) are those their last commit records
report that commit (`reused_version`) instead of computing again; checks that passed on
the very same table versions report the pass again (`reused`, `checked_versions`). Both
are seen here on a real lake, from Delta's versions and commit metrics and from what the
run reported, next to a real change that must be computed and checked anew.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa

from lakehouse.graph.reuse import reusing_pass
from lakehouse.lake import LakeResource
from lakehouse.lake.tables import (
    PHOTO_FEATURES,
    POPULARITY_LABELS,
    RAW_EVENTS,
    RAW_PHOTOS,
    TRAINING_SET,
)
from lakehouse_tests.conftest import (
    DEMO_FIRST,
    DEMO_LAST,
    FEATURE_ASSETS,
    DemoLake,
    Lakehouse,
    materializations,
)
from lakehouse_tests.delta_counts import NOTHING, versions, written_since

pytestmark = pytest.mark.speed

LABEL_ASSETS = frozenset({"label_queue", "weak_labels"})
RERUN = FEATURE_ASSETS | LABEL_ASSETS
# the derived tables that stand unread when their inputs and code are unchanged
REUSING_ASSETS = ("photo_features", "popularity_labels", "training_set", *sorted(LABEL_ASSETS))
# what those assets and their checks read, none of it written by the rerun
UNREAD = (RAW_EVENTS, RAW_PHOTOS, "raw_users", "raw_photo_labels", "images", "photo_classes")
# each check that reuses a pass, and the tables whose versions it names
REUSING_CHECKS = {
    "photo_features_no_leakage": (PHOTO_FEATURES, RAW_PHOTOS, RAW_EVENTS),
    "photo_features_unique": (PHOTO_FEATURES,),
    "photo_features_required_fields": (PHOTO_FEATURES,),
    "photo_features_reconcile": (RAW_PHOTOS, PHOTO_FEATURES),
    "popularity_labels_unique": (POPULARITY_LABELS,),
    "training_set_labels_complete": (TRAINING_SET, POPULARITY_LABELS),
}


@pytest.fixture(scope="module")
def built(demo_lake: DemoLake, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo lake (the session's is read by other tests) with the label
    assets materialized too: every reusing asset's last commit was written by this code."""
    root = tmp_path_factory.mktemp("noop")
    shutil.copytree(demo_lake.lakehouse.sources, root / "sources")
    shutil.copytree(demo_lake.lakehouse.lake, root / "lake")
    Lakehouse(sources=root / "sources", lake=root / "lake").materialize(
        DEMO_FIRST, DEMO_LAST, select=RERUN
    )
    return root


def copy_of(built: Path, tmp_path: Path) -> Lakehouse:
    shutil.copytree(built / "sources", tmp_path / "sources")
    shutil.copytree(built / "lake", tmp_path / "lake")
    return Lakehouse(sources=tmp_path / "sources", lake=tmp_path / "lake")


def check_evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()
    }


def checks_passed(result: dg.ExecuteInProcessResult, reused: bool, versions: dict) -> None:
    """Every reusing check passed, reused its earlier pass or not, on exactly the table
    versions it reads from `versions`."""
    checks = check_evaluations(result)
    for name, tables in REUSING_CHECKS.items():
        evaluation = checks[name]
        assert evaluation.passed, name
        assert evaluation.metadata["reused"].value is reused, name
        assert evaluation.metadata["checked_versions"].value == {t: versions[t] for t in tables}


def test_no_change_rerun_reports_stored_rows_and_passes_without_reading(
    built: Path, tmp_path: Path
) -> None:
    copy = copy_of(built, tmp_path)
    lake = copy.lake_resource
    before = versions(lake)
    # the inputs' data files gone, their logs (so their versions) intact: a step or check
    # that read any of them would fail
    for name in UNREAD:
        for uri in lake.open(name).file_uris():  # type: ignore[union-attr]
            Path(uri.removeprefix("file://")).unlink()
        with pytest.raises(FileNotFoundError):
            lake.read(name)
    result = copy.materialize(DEMO_FIRST, DEMO_LAST, select=RERUN)

    assert versions(lake) == before
    assert written_since(lake, before) == dict.fromkeys(before, NOTHING)
    found = materializations(result)
    for name in REUSING_ASSETS:
        assert found[name]["reused_version"] == before[name], name
        assert found[name]["rows_computed"] == 0, name
        assert found[name]["delta_version"] == before[name], name
        assert found[name]["dagster/row_count"] == lake.row_count(name), name
    checks_passed(result, reused=True, versions=before)


def change_one_photo_and_one_label(sources: Path) -> None:
    """Move an unlabelled photo's posting time by an hour and retitle it; give a labelled
    photo another content label."""
    engine = sa.create_engine(f"sqlite:///{sources / 'metadata.db'}")
    with engine.begin() as connection:
        photo_id, posted_at = connection.execute(
            sa.text(
                "SELECT photo_id, posted_at FROM photos WHERE photo_id NOT IN "
                "(SELECT photo_id FROM photo_labels) ORDER BY photo_id LIMIT 1"
            )
        ).one()
        later = (datetime.fromisoformat(str(posted_at)) + timedelta(hours=1)).isoformat()
        connection.execute(
            sa.text(
                "UPDATE photos SET posted_at = :t, title = title || ' again' WHERE photo_id = :p"
            ),
            {"t": later, "p": photo_id},
        )
        labelled, label = connection.execute(
            sa.text("SELECT photo_id, content_label FROM photo_labels ORDER BY photo_id LIMIT 1")
        ).one()
        other = "square" if label != "square" else "circle"
        connection.execute(
            sa.text("UPDATE photo_labels SET content_label = :c WHERE photo_id = :p"),
            {"c": other, "p": labelled},
        )
    engine.dispose()


def test_a_changed_row_is_recomputed_and_checked_again(built: Path, tmp_path: Path) -> None:
    copy = copy_of(built, tmp_path)
    lake = copy.lake_resource
    change_one_photo_and_one_label(copy.sources)
    before = versions(lake)
    result = copy.materialize(
        DEMO_FIRST, DEMO_LAST, select=RERUN | {"raw_photos", "raw_photo_labels"}
    )

    written = written_since(lake, before)
    found = materializations(result)
    for name in REUSING_ASSETS:
        assert written[name].updated >= 1, (name, written[name])
        assert "reused_version" not in found[name], name
        assert found[name]["delta_version"] == lake.version(name) > before[name]
    now = versions(lake)
    checks_passed(result, reused=False, versions=now)

    # once more, on the same instance: what only the computation gave is shown again from
    # the previous materialization, its picture by reference, not inline a second time
    again = materializations(copy.materialize(DEMO_FIRST, DEMO_LAST, select=RERUN))
    computed, reused = found["training_set"], again["training_set"]
    assert reused["reused_version"] == lake.version(TRAINING_SET)
    assert reused["train_rows"] == computed["train_rows"]
    assert "data:image/png" in computed["label_distribution"]
    assert "data:image/png" not in reused["label_distribution"]
    assert reused["label_distribution/sha256"] == computed["label_distribution/sha256"]
    # the same model on the same training_set version: its picture is not drawn again
    trained, kept = found["popularity_model"], again["popularity_model"]
    assert kept["weights_key"] == trained["weights_key"]
    assert "data:image/png" in trained["predicted_vs_actual"]
    assert "data:image/png" not in kept["predicted_vs_actual"]
    assert kept["predicted_vs_actual/sha256"] == trained["predicted_vs_actual/sha256"]
    assert versions(lake) == now


def test_the_augmentation_grid_is_drawn_again_only_when_its_images_change(
    built: Path, tmp_path: Path
) -> None:
    """A changed photo that the grid does not show (the grid shows the first images by
    sha256) leaves the picture as it was: shown by reference, no pixel read for it."""
    from PIL import Image

    copy = copy_of(built, tmp_path)
    lake = copy.lake_resource
    path = ("raw_objects", "images", "augmented_tensors")
    first = materializations(copy.materialize(DEMO_FIRST, DEMO_LAST, select=set(path)))
    grid = first["augmented_tensors"]
    assert "data:image/png" in grid["augmentation_grid"]
    images = lake.read("images").sort("sha256")
    last_key = images["keys"][-1][0]  # the image the grid is least likely to show
    with Image.open(copy.sources / last_key) as photo:
        photo.rotate(180).save(copy.sources / last_key)
    before = versions(lake)
    again = materializations(copy.materialize(DEMO_FIRST, DEMO_LAST, select=set(path)))
    redrawn = again["augmented_tensors"]
    assert written_since(lake, before)["augmented_tensors"].inserted == 4  # its new views
    assert redrawn["augmentation_grid/sha256"] == grid["augmentation_grid/sha256"]
    assert "data:image/png" not in redrawn["augmentation_grid"]
    assert redrawn["augmentation_grid/of"] == grid["augmentation_grid/of"]


def test_a_pass_is_reused_only_on_the_same_versions_and_a_failure_never(tmp_path: Path) -> None:
    """The helper itself on a real Delta table: how often the check body runs."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    lake.upsert("scratch", _rows([1, 2]), key=["id"], commit_info={"test": "reuse"})
    evaluated: list[dict[str, int | None]] = []

    def body(passed: bool):
        def check(at: dict[str, int | None]) -> dg.AssetCheckResult:
            evaluated.append(at)
            rows = lake.read("scratch", version=at["scratch"])
            return dg.AssetCheckResult(passed=passed, metadata={"rows": rows.height})

        return check

    first = reusing_pass(lake, "scratch_ok", "1", ("scratch",), body(True))
    again = reusing_pass(lake, "scratch_ok", "1", ("scratch",), body(True))
    assert evaluated == [{"scratch": 0}]
    assert (first.metadata["reused"].value, again.metadata["reused"].value) == (False, True)
    assert again.passed and again.metadata["checked_versions"].value == {"scratch": 0}

    reusing_pass(lake, "scratch_ok", "2", ("scratch",), body(True))  # other code
    lake.upsert("scratch", _rows([3]), key=["id"], commit_info={"test": "reuse"})
    reusing_pass(lake, "scratch_ok", "1", ("scratch",), body(True))  # a new version
    assert evaluated[1:] == [{"scratch": 0}, {"scratch": 1}]

    for _ in range(2):
        failed = reusing_pass(lake, "scratch_bad", "1", ("scratch",), body(False))
        assert not failed.passed and failed.metadata["reused"].value is False
    assert len(evaluated) == 5


def _rows(ids: list[int]):
    return pl.DataFrame({"id": ids, "value": [str(i) for i in ids]})


def test_new_classifier_outputs_keep_the_activity_columns(built: Path, tmp_path: Path) -> None:
    """When only photo_classes (or images) moved since photo_features was computed, its
    point-in-time activity stands: the events are not read again, and the rows are those a
    computation from scratch gives; the no-leakage check's pass on the same activity
    columns (and the same events) stands too."""
    import duckdb

    from lakehouse.features.logic import photo_feature_rows
    from lakehouse.lake.tables import IMAGES, PHOTO_CLASSES, RAW_USERS

    copy = copy_of(built, tmp_path)
    lake = copy.lake_resource
    classes = lake.read(PHOTO_CLASSES)
    gone = classes.sort("sha256")["sha256"][0]
    lake.delete_keys(PHOTO_CLASSES, pl.DataFrame({"sha256": [gone]}), commit_info={})
    expected = photo_feature_rows(
        duckdb.connect(),
        lake.read(RAW_PHOTOS),
        lake.read(RAW_USERS, columns=["user_id", "created_at"]),
        lake.read(RAW_EVENTS, columns=["ts", "user_id", "event", "photo_id"]),
        lake.read(IMAGES, columns=["sha256", "keys"]),
        lake.read(PHOTO_CLASSES),
    )
    for uri in lake.open(RAW_EVENTS).file_uris():  # type: ignore[union-attr]
        Path(uri.removeprefix("file://")).unlink()  # a step that read events would fail
    before = versions(lake)
    job = (
        copy.definitions()
        .resolve_implicit_global_asset_job_def()
        .get_subset(
            asset_selection={dg.AssetKey(PHOTO_FEATURES)},
            asset_check_selection={
                dg.AssetCheckKey(dg.AssetKey(PHOTO_FEATURES), "photo_features_no_leakage")
            },
        )
    )
    result = job.execute_in_process(instance=copy.instance)
    assert result.success

    # the photos of that image, and only they, lost their classes
    was = lake.read(PHOTO_FEATURES, version=before[PHOTO_FEATURES]).sort("photo_id")
    moved = (was["row_sha256"] != expected["row_sha256"]).sum()
    assert 0 < moved == written_since(lake, before)[PHOTO_FEATURES].updated
    stored = lake.read(PHOTO_FEATURES).sort("photo_id")
    assert stored.select(expected.columns).equals(expected)
    check = check_evaluations(result)["photo_features_no_leakage"]
    assert check.passed
    assert check.metadata["reused"].value is True
    assert check.metadata["checked_versions"].value[PHOTO_FEATURES] == before[PHOTO_FEATURES] + 1


# incremental assets that report an earlier step's record when every table they read or
# write (and their quarantine rows) is as that step left it
STATE_REUSING = (
    "raw_objects",
    "raw_users",
    "raw_photos",
    "raw_photo_labels",
    "images",
    "augmented_tensors",
    "style_content_classifier",
    "photo_classes",
)
# what they read and write besides the source database and the quarantine table
STATE_TABLES = (
    "raw_objects",
    "raw_users",
    RAW_PHOTOS,
    "raw_photo_labels",
    "images",
    "augmented_tensors",
    "style_content_classifier",
    "photo_classes",
)


def assets_only(
    copy: Lakehouse, names: tuple[str, ...], config: dict | None = None
) -> dg.ExecuteInProcessResult:
    """Materialize `names` without their checks (which read the tables themselves)."""
    job = copy.definitions().resolve_implicit_global_asset_job_def()
    subset = job.get_subset(
        asset_selection={dg.AssetKey(name) for name in names}, asset_check_selection=set()
    )
    result = subset.execute_in_process(instance=copy.instance, run_config={"ops": config or {}})
    assert result.success
    return result


def test_an_incremental_step_in_the_state_it_left_reads_no_row(built: Path, tmp_path: Path) -> None:
    copy = copy_of(built, tmp_path)
    lake = copy.lake_resource
    first = materializations(assets_only(copy, STATE_REUSING))
    before = versions(lake)
    # their data files gone, the logs intact: a step that read a row would fail
    for name in STATE_TABLES:
        for uri in lake.open(name).file_uris():  # type: ignore[union-attr]
            Path(uri.removeprefix("file://")).unlink()
    result = assets_only(copy, STATE_REUSING)

    assert versions(lake) == before
    assert written_since(lake, before) == dict.fromkeys(before, NOTHING)
    found = materializations(result)
    for name in STATE_REUSING:
        assert found[name]["rows_computed"] == 0, name
        assert found[name]["reused_state"], name
        for fact in ("data_version", "dagster/row_count", "delta_version"):
            assert found[name][fact] == first[name][fact], (name, fact)
    # the picture is shown by reference, never inline again
    assert "data:image/png" not in found["augmented_tensors"]["augmentation_grid"]
    assert (
        found["augmented_tensors"]["augmentation_grid/sha256"]
        == first["augmented_tensors"]["augmentation_grid/sha256"]
    )


def test_a_changed_input_or_config_computes_again(built: Path, tmp_path: Path) -> None:
    copy = copy_of(built, tmp_path)
    lake = copy.lake_resource
    assets_only(copy, STATE_REUSING)
    engine = sa.create_engine(copy.db_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE photos SET title = title || ' again' WHERE photo_id = 1")
        )
    engine.dispose()
    before = versions(lake)
    grid = {"augmented_tensors": {"config": {"preview_images": 3}}}
    found = materializations(assets_only(copy, STATE_REUSING, grid))

    written = written_since(lake, before)
    assert written[RAW_PHOTOS].updated == 1
    # a new source row, a new version of a table read, another config: computed again
    for name in ("raw_photos", "raw_photo_labels", "augmented_tensors", "photo_classes"):
        assert "reused_state" not in found[name], name
    assert "the first 3 images" in found["augmented_tensors"]["augmentation_grid"]
    # what none of that reaches stands: its tables and its quarantine rows are unchanged
    for name in ("raw_objects", "raw_users", "images"):
        assert found[name]["reused_state"], name


def test_a_model_trained_on_this_training_set_version_reads_no_row_of_it(
    built: Path, tmp_path: Path
) -> None:
    """popularity_model on the training_set version its current model was trained on
    reuses that model without reading the version's rows (their files are gone here)."""
    copy = copy_of(built, tmp_path)
    lake = copy.lake_resource
    first = materializations(assets_only(copy, ("popularity_model",)))["popularity_model"]
    for uri in lake.open(TRAINING_SET).file_uris():  # type: ignore[union-attr]
        Path(uri.removeprefix("file://")).unlink()
    again = materializations(assets_only(copy, ("popularity_model",)))["popularity_model"]

    assert again["rows_computed"] == 0
    for fact in ("data_version", "weights_key", "training_set_version", "val_mae"):
        assert again[fact] == first[fact], fact


def test_raw_objects_follows_the_bytes_not_the_file_times(built: Path, tmp_path: Path) -> None:
    """raw_objects' state holds what it takes of each object (sha256, size, probe), not its
    file time: a photo touched is no change, a photo with new bytes is one."""
    copy = copy_of(built, tmp_path)
    lake = copy.lake_resource
    assets_only(copy, ("raw_objects",))  # the demo lake's last commit may not be this code's
    registry = lake.read("raw_objects").filter(pl.col("status") == "current").sort("key")  # type: ignore[union-attr]
    first, other = (
        copy.sources / key
        for key in registry.unique("sha256", keep="first", maintain_order=True)["key"][:2]
    )
    later = first.stat().st_mtime_ns + 10**9
    os.utime(first, ns=(later, later))
    before = versions(lake)
    touched = materializations(assets_only(copy, ("raw_objects",)))["raw_objects"]

    assert touched["reused_state"]
    assert written_since(lake, before)["raw_objects"] == NOTHING
    shutil.copyfile(other, first)  # new bytes under the same key: one version replaced
    changed = materializations(assets_only(copy, ("raw_objects",)))["raw_objects"]

    assert "reused_state" not in changed
    counted = written_since(lake, before)["raw_objects"]
    assert (counted.inserted, counted.updated) == (1, 1)
    assert changed["data_version"] != touched["data_version"]
    again = materializations(assets_only(copy, ("raw_objects",)))["raw_objects"]
    assert again["reused_state"] and again["data_version"] == changed["data_version"]


def test_a_state_is_recorded_only_when_every_commit_since_was_the_steps_own(
    tmp_path: Path,
) -> None:
    """The record helpers in a real asset on a real lake: a step that writes a row, with
    another writer's commit forced in between its start and its end, or not."""
    from datetime import UTC
    from datetime import datetime as dt

    from lakehouse.graph.reuse import remember_state, reused_state, step_state
    from lakehouse.lake.metadata import commit_info_for
    from lakehouse.lake.quarantine import sync_quarantine
    from lakehouse.lake.rejections import rejection, rejections_frame

    lake = LakeResource(root=str(tmp_path / "lake"))
    lake.upsert("scratch", _rows([1, 2]), key=["id"], commit_info={"test": "setup"})
    foreign: list[int] = []  # rows another writer commits while the step runs

    @dg.asset(name="scratch_asset")
    def scratch_asset(context) -> dg.MaterializeResult:  # noqa: ANN001 (Dagster reads it)
        state = step_state(lake, "scratch_asset", "1", ["scratch"], ["scope_a"])
        if (reused := reused_state(context, lake, state)) is not None:
            return reused
        rows = lake.row_count("scratch")
        lake.upsert(
            "scratch", _rows([100 + rows]), key=["id"], commit_info=commit_info_for(context)
        )
        if foreign:
            lake.upsert("scratch", _rows(foreign), key=["id"], commit_info={"other": "writer"})
        done = dg.MaterializeResult(
            data_version=dg.DataVersion(f"v{rows}"), metadata={"rows": rows}
        )
        return remember_state(context, lake, state, done)

    instance = dg.DagsterInstance.ephemeral()

    def run() -> dict:
        result = dg.materialize([scratch_asset], instance=instance)
        return materializations(result)["scratch_asset"]

    computed = run()
    again = run()  # nothing moved since: the record stands, no row written
    assert "reused_state" not in computed and again["reused_state"]
    assert again["data_version"] == computed["data_version"] and again["rows"] == 2
    assert again["rows_computed"] == 0 and lake.row_count("scratch") == 3

    lake.upsert("scratch", _rows([50]), key=["id"], commit_info={"other": "writer"})
    foreign.append(99)
    raced = run()  # a moved table: computed (its row, then the other writer's)
    foreign.clear()
    assert "reused_state" not in raced and lake.row_count("scratch") == 6
    assert "reused_state" not in run()  # ... and recorded nothing: this one computes too
    assert lake.row_count("scratch") == 7
    assert run()["reused_state"]

    # the quarantine rows of the step's own scope are part of its state, others' are not
    now = dt.now(UTC)
    for scope in ("scope_b", "scope_a"):
        bad = rejections_frame(scope, [rejection("k", "unreadable", sha256="0" * 64)])
        sync_quarantine(lake, scope, bad, now=now, commit_info={"other": "writer"})
        outcome = run()
        assert ("reused_state" in outcome) is (scope == "scope_b"), scope
    assert pl.DataFrame(lake.read("scratch")).height == 8

"""README "Guarantees" name real tests, and a session that runs them all proves them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from lakehouse.lake import LakeResource
from lakehouse_tests import guarantees
from lakehouse_tests.delta_counts import left_unchanged
from lakehouse_tests.guarantees import git_status, missing_tests, named_tests, unproven

pytestmark = pytest.mark.proof


def test_every_test_the_readme_guarantees_name_exists() -> None:
    named = named_tests()
    assert len(named) > 50, "the Guarantees section names its tests as `file.py::test_name`"
    assert missing_tests() == []


def test_a_named_test_that_does_not_exist_is_found(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n\n## Guarantees\n\n- a — `test_a.py::test_here`, `test_a.py::test_gone`\n"
        "\n### More\n\n- b — `test_b.py::test_there`\n\n## Next\n\n- `test_a.py::test_after`\n"
    )
    (tmp_path / "test_a.py").write_text("def test_here():\n    pass\n")
    assert named_tests(readme) == [
        ("test_a.py", "test_here"),
        ("test_a.py", "test_gone"),
        ("test_b.py", "test_there"),
    ]
    assert missing_tests(readme, tmp_path) == ["test_a.py::test_gone", "test_b.py::test_there"]


def test_a_named_test_that_failed_skipped_or_did_not_run_is_unproven() -> None:
    tests = ("test_ok", "test_param", "test_bad", "test_skip", "test_no")
    named = [("test_a.py", name) for name in tests]
    outcomes = {
        "lakehouse_tests/test_a.py::test_ok": "passed",
        "lakehouse_tests/test_a.py::test_param[1]": "passed",
        "lakehouse_tests/test_a.py::test_param[2]": "passed",
        "lakehouse_tests/test_a.py::test_bad": "failed",
        "lakehouse_tests/test_a.py::test_skip": "skipped",
    }
    assert unproven(named, outcomes, ci=True) == [
        "README guarantee not proven: test_a.py::test_bad failed",
        "README guarantee not proven: test_a.py::test_skip was skipped",
        "README guarantee not proven: test_a.py::test_no did not run",
    ]
    assert len(unproven(named, outcomes, ci=False)) == 2, "outside CI a skip is allowed"


def test_a_file_written_into_the_checkout_is_seen(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/data/*\n__pycache__/\n")
    (tmp_path / "data").mkdir()
    before = git_status(tmp_path)
    (tmp_path / "data" / "screenshot.png").write_bytes(b"")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"")
    assert git_status(tmp_path) - before == {"!! data/screenshot.png"}
    assert git_status(tmp_path / "no-such-dir") is None


def test_a_write_into_a_shared_lake_is_seen(tmp_path: Path) -> None:
    lake = LakeResource(root=str(tmp_path / "lake"))
    rows = pl.DataFrame({"id": [1, 2], "value": ["a", "b"]})
    lake.upsert("scratch", rows, key=["id"], commit_info={})
    with left_unchanged(lake, "a shared lake"):
        lake.read("scratch")
    changed = rows.with_columns(value=pl.lit("c"))
    seen = r"wrote into a shared lake.*'scratch': \(0, 1\)"
    with pytest.raises(AssertionError, match=seen), left_unchanged(lake, "a shared lake"):
        lake.upsert("scratch", changed, key=["id"], commit_info={})


def test_a_whole_session_on_two_workers_fails_naming_each_unproven_guarantee(
    tmp_path: Path,
) -> None:
    """The plugin itself, end to end, in a tiny checkout run the way `make test` runs."""
    tests = tmp_path / "lakehouse_tests"
    tests.mkdir()
    (tests / "__init__.py").write_text("")
    shutil.copy(guarantees.__file__, tests / "guarantees.py")
    (tests / "conftest.py").write_text('pytest_plugins = ["lakehouse_tests.guarantees"]\n')
    (tests / "test_a.py").write_text("def test_ok():\n    pass\n")
    (tests / "test_b.py").write_text("def test_fail():\n    assert False\n")
    (tmp_path / "README.md").write_text(
        "## Guarantees\n\n- `test_a.py::test_ok`, `test_a.py::test_gone`, `test_b.py::test_fail`\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2"]
        + ["--dist", "loadfile", "lakehouse_tests"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout
    said = [line for line in done.stdout.splitlines() if line.startswith("README guarantee")]
    assert said == [
        "README guarantee not proven: test_a.py::test_gone did not run",
        "README guarantee not proven: test_b.py::test_fail failed",
    ], done.stdout

"""Merges into a growing table, and scans of a few keys, touch only the files their keys
can be in."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from lakehouse.lake import LakeResource
from lakehouse.lake.merge import key_ranges

pytestmark = pytest.mark.scale

KEY = ["name", "n"]
INFO = {"dagster_run_id": "test"}


def batch(first: int, count: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "name": [f"key-{i:05d}" for i in range(first, first + count)],
            "n": list(range(first, first + count)),
            "value": [f"v{first}"] * count,
        }
    )


def test_a_merge_skips_the_files_its_keys_cannot_be_in(tmp_path: Path) -> None:
    lake = LakeResource(root=str(tmp_path))
    for first in range(0, 1000, 100):  # ten commits, ten files of disjoint key ranges
        lake.upsert("t", batch(first, 100), KEY, commit_info=INFO)

    lake.upsert("t", batch(950, 100), KEY, commit_info=INFO)  # 50 updates, 50 inserts

    metrics = lake.open("t").history(1)[0]["operationMetrics"]  # type: ignore[union-attr]
    assert metrics["num_target_files_scanned"] == 1
    assert metrics["num_target_files_skipped_during_scan"] == 9
    rows = lake.read("t").sort("n")  # type: ignore[union-attr]
    assert rows["n"].to_list() == list(range(1050))
    assert rows.filter(pl.col("n") >= 950)["value"].unique().to_list() == ["v950"]
    assert rows.filter(pl.col("n") < 900)["value"].n_unique() == 9


def test_key_bounds_leave_out_text_that_would_need_escaping() -> None:
    rows = pl.DataFrame({"name": ["a'b", "z"], "n": [3, 7], "plain": ["x y", "x/z.jpg"]})
    bounds = key_ranges(rows.to_arrow(), ["name", "n", "plain"])
    assert bounds == ["t.n >= 3", "t.n <= 7", "t.plain >= 'x y'", "t.plain <= 'x/z.jpg'"]


def test_row_groups_with_bounds_open_only_the_files_they_allow(tmp_path: Path) -> None:
    lake = LakeResource(root=str(tmp_path))
    for first in range(0, 1000, 100):  # ten files of disjoint key ranges
        lake.upsert("t", batch(first, 100), KEY, commit_info=INFO)

    def scanned(bounds: tuple[str, object, object] | None) -> list[int]:
        return sorted(
            n for rows in lake.row_groups("t", ["n"], bounds) for n in rows["n"].to_pylist()
        )

    assert scanned(None) == list(range(1000))
    # whole files come back: the one holding key-00420, and the two the range spans
    assert scanned(("name", "key-00420", "key-00420")) == list(range(400, 500))
    assert scanned(("name", "key-00150", "key-00250")) == list(range(100, 300))
    assert scanned(("name", "zzz", "zzzz")) == []

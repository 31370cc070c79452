"""The benchmark harness end to end at its tiny scale: it runs, and reports every comparison.

Nothing here is timed: the figures belong to `make bench`; this only keeps the
harness working (world generation, the Dagster and plain-script runs, the reruns,
every peer) and checks the shape of what it writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.settings import PROJECT_ROOT

# above the bench subprocess's own 1200 s, so that one fails first and says why
pytestmark = [pytest.mark.scale, pytest.mark.slow, pytest.mark.timeout(1500)]

NUMBER = (int, float)
FIELDS = {"name": str, "ours": NUMBER, "peer": NUMBER, "unit": str, "ratio": NUMBER, "target": str}
COMPARISONS = (
    "ingest",
    "augment",
    "pandas merge_asof",
    "query scan+filter",
    "query group-by",
    "query join",
    "query window",
    "no-change rerun",
    "one-photo change: rerun",
    "one-photo change: most images recomputed",
    "orchestration overhead",
    "peak RSS of the whole run",
    "peak RSS at",
)


def outputs(folder: Path) -> dict[str, bytes]:
    """The result files a bench run writes into `folder`, as they are now."""
    files = (folder / name for name in ("results.json", "RESULTS.md"))
    return {path.name: path.read_bytes() for path in files if path.exists()}


def test_tiny_bench_reports_every_comparison(tmp_path: Path) -> None:
    committed = outputs(PROJECT_ROOT / "bench")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--scale", "tiny", "--out", str(tmp_path / "out")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[bench" in done.stdout  # progress lines while it runs

    results = json.loads((tmp_path / "out" / "results.json").read_text())
    for comparison in COMPARISONS:
        assert any(r["name"].startswith(comparison) or comparison in r["name"] for r in results), (
            comparison
        )
    for record in results:
        assert set(record) == {*FIELDS, "met"}
        for field, kind in FIELDS.items():
            assert isinstance(record[field], kind), (field, record)
        op, bound = record["target"].split()
        assert op in {">=", "<="}
        ratio, bound = record["ratio"], float(bound)
        assert record["met"] is (ratio >= bound if op == ">=" else ratio <= bound)
    table = (tmp_path / "out" / "RESULTS.md").read_text()
    assert "scale" in table and "machine" in table and "date" in table
    # Dagster's own floor under a rerun (bench/floor.py), beside the real one
    assert "Dagster's floor under a rerun" in table and "of the first run" in table
    assert all(f"| {r['name']} |" in table for r in results)
    # the rerun with no change computed nothing; the peers agreed (else the bench fails)
    assert "no-change rerun" in done.stdout and "rows computed 0" in done.stdout
    assert outputs(PROJECT_ROOT / "bench") == committed  # --out kept the repo's bench/ clean

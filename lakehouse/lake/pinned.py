"""Snapshot assets: inputs read at pinned Delta versions, results synced row by row.

An asset that derives a whole table from other tables pins each input's version
first, reads every input at that version (one consistent snapshot, even while
other runs write), and records the versions with its result, so the same inputs
can be read back later (`input_versions` in the metadata and in the commit).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import dagster as dg
import polars as pl

from lakehouse.lake.digests import frame_digest
from lakehouse.lake.metadata import commit_info_for, table_metadata
from lakehouse.lake.resource import LakeResource
from lakehouse.lake.tables import key_of
from lakehouse.resources.errors import PermanentError


def pinned_versions(lake: LakeResource, names: Iterable[str]) -> dict[str, int]:
    """The current version of each input, so every read below sees one consistent snapshot."""
    versions = {str(name): lake.version(name) for name in names}
    missing = sorted(name for name, version in versions.items() if version is None)
    if missing:
        raise PermanentError(f"materialize {', '.join(missing)} first: no such table in the lake")
    return versions  # type: ignore[return-value]


def read_pinned(
    lake: LakeResource, name: str, versions: dict[str, int], columns: list[str] | None = None
) -> pl.DataFrame:
    """Rows of input `name` at its pinned version."""
    return lake.read(name, columns=columns, version=versions[name])  # type: ignore[return-value]


def commit_built_from(
    commit: dict[str, object], versions: dict[str, int], code_version: str
) -> bool:
    """Whether a table's latest `commit` (`LakeResource.commit_metadata`) was computed by
    `code_version` from exactly these input versions (`snapshot_result` records both): its
    rows are what a recomputation would give, so a no-change run need not read its inputs
    again.

    `code_version` names the code and every parameter the rows depend on besides the
    inputs' rows (a config value, a cut-off read elsewhere)."""
    return recorded_inputs(commit, code_version) == versions


def recorded_inputs(commit: dict[str, object], code_version: str) -> dict[str, int] | None:
    """The input versions a commit recorded (`snapshot_result`), when `code_version`
    computed it; None otherwise."""
    if commit.get("code_version") != code_version or "input_versions" not in commit:
        return None
    return json.loads(str(commit["input_versions"]))


def snapshot_result(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    name: str,
    rows: pl.DataFrame,
    versions: dict[str, int],
    extra: dict[str, object] | None = None,
    code_version: str | None = None,
) -> dg.MaterializeResult:
    """Sync `rows` (with row_sha256) into the table by its natural key, changed rows only,
    and report content and input versions (in the metadata and in the commit, as
    `input_versions`: JSON {table: version}; with `code_version`, that too, and the data
    version, so that `unchanged_result` can report it later without reading the rows)."""
    key = key_of(name)
    data_version = frame_digest(rows, key, [*key, "row_sha256"])
    info = {
        **commit_info_for(context),
        "input_versions": json.dumps(versions, sort_keys=True),
        "data_version": data_version,
    }
    if code_version is not None:
        info["code_version"] = code_version
    changes = lake.sync_snapshot(name, rows, key, commit_info=info)
    context.log.info(f"{name}: {changes}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(data_version),
        metadata={
            **table_metadata(lake, name, rows.height, sum(changes.values())),
            "input_versions": dg.MetadataValue.json(versions),
            **{f"rows_{kind}": n for kind, n in changes.items()},
            **(extra or {}),
        },
    )

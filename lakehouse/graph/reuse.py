"""What a run that finds nothing changed reuses instead of reading: stored rows, passed checks.

A derived table is a function of its inputs' versions and its code; a check is a function
of the table versions it reads and its code. When those are the same as last time, the
answer is too, and reading whole tables again only to find that costs a no-change run
most of its time. Both records live in the lake beside the data (a table's commit, a
claim blob), so any process on any instance finds them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence

import dagster as dg

from lakehouse.graph.pictures import previous_metadata
from lakehouse.lake import LakeResource, table_metadata
from lakehouse.lake.blobs import object_key
from lakehouse.lake.pinned import commit_built_from


def unchanged_result(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    name: str,
    versions: dict[str, int],
    code_version: str,
) -> dg.MaterializeResult | None:
    """The table as it stands, without reading a row, when its latest commit was computed
    by `code_version` from exactly these input versions and recorded its data version
    (`snapshot_result` does both); None when it must be computed.

    Reports `reused_version` (the table version whose rows stand) and rows_computed 0;
    what only a computation gives (statistics, pictures) is carried over from the
    previous materialization when that one showed this very table version.
    """
    commit = lake.commit_metadata(name)
    if not commit_built_from(commit, versions, code_version) or "data_version" not in commit:
        return None
    version = lake.version(name)
    context.log.info(
        f"{name}: inputs {json.dumps(versions, sort_keys=True)} and code {code_version!r} "
        f"unchanged since version {version}: not recomputed, no row read"
    )
    earlier = previous_metadata(context)
    same_table = getattr(earlier.get("delta_version"), "value", None) == version
    return dg.MaterializeResult(
        data_version=dg.DataVersion(str(commit["data_version"])),
        metadata={
            **(earlier if same_table else {}),
            **table_metadata(lake, name, lake.row_count(name), 0),
            "input_versions": dg.MetadataValue.json(versions),
            "reused_version": version,
            **{f"rows_{kind}": 0 for kind in ("inserted", "updated", "deleted")},
        },
    )


CheckFn = Callable[[dict[str, int | None]], dg.AssetCheckResult]


def claim_key(check: str, code_version: str, tables: dict[str, tuple[str, int]]) -> str:
    """Where the claim "`check` (this code) passed on these tables" is stored: the blob of
    its JSON, under its own SHA-256, so the claim is found by writing it out again."""
    return object_key(hashlib.sha256(claim_bytes(check, code_version, tables)).hexdigest())


def claim_bytes(check: str, code_version: str, tables: dict[str, tuple[str, int]]) -> bytes:
    body = {"check": check, "code_version": code_version, "tables": tables}
    return json.dumps(body, sort_keys=True).encode()


def reusing_pass(
    lake: LakeResource, check: str, code_version: str, reads: Sequence[str], compute: CheckFn
) -> dg.AssetCheckResult:
    """Evaluate a check that reads only the lake tables `reads`, at pinned versions.

    `compute(versions)` must read each table at the version given (None: the table is
    absent). When this check, at this `code_version`, passed before on exactly these
    table versions (each table named by its Delta id too, so a table dropped and made
    again is another table), the pass is reported again without a row read: the
    description says so and the metadata has `reused: true` and `checked_versions`.
    Only passes are reused; a failing check is evaluated every time.
    """
    opened = {name: lake.open(name) for name in reads}
    versions = {name: None if t is None else t.version() for name, t in opened.items()}
    if any(table is None for table in opened.values()):
        return with_versions(compute(versions), versions, reused=False)
    tables = {name: (t.metadata().id, t.version()) for name, t in opened.items() if t is not None}
    key = claim_key(check, code_version, tables)
    if has_object(lake, key):
        shown = ", ".join(f"{name} v{version}" for name, version in sorted(versions.items()))
        return with_versions(
            dg.AssetCheckResult(
                passed=True,
                description=f"passed before on these very table versions ({shown}): "
                "not evaluated again",
                metadata={"claim": key},
            ),
            versions,
            reused=True,
        )
    result = compute(versions)
    if result.passed:
        lake.put_object(claim_bytes(check, code_version, tables))
    return with_versions(result, versions, reused=False)


def with_versions(
    result: dg.AssetCheckResult, versions: dict[str, int | None], reused: bool
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=result.passed,
        description=result.description,
        severity=result.severity,
        metadata={
            **(result.metadata or {}),
            "reused": reused,
            "checked_versions": dg.MetadataValue.json(versions),
        },
    )


def has_object(lake: LakeResource, key: str) -> bool:
    """Whether the blob store holds `key` (a missing blob is an answer, not an error)."""
    try:
        lake.get_object(key)
    except FileNotFoundError:
        return False
    except Exception as exc:  # S3: botocore's ClientError with NoSuchKey
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code in ("NoSuchKey", "404"):
            return False
        raise
    return True

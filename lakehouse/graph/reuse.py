"""What a run that finds nothing changed reuses instead of reading: stored rows, passed checks.

A derived table is a function of its inputs' versions and its code; a check is a function
of the table versions it reads and its code. When those are the same as last time, the
answer is too, and reading whole tables again only to find that costs a no-change run
most of its time. Both records live in the lake beside the data (a table's commit, a
claim blob), so any process on any instance finds them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence

import dagster as dg

from lakehouse.graph.pictures import previous_metadata, without_inline_pictures
from lakehouse.lake import LakeDiskError, LakeResource, LakeUnavailable, table_metadata
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
            **(without_inline_pictures(earlier) if same_table else {}),
            **table_metadata(lake, name, lake.row_count(name), 0),
            "input_versions": dg.MetadataValue.json(versions),
            "reused_version": version,
            **{f"rows_{kind}": 0 for kind in ("inserted", "updated", "deleted")},
        },
    )


CheckFn = Callable[[dict[str, int | None]], dg.AssetCheckResult]


def claim_bytes(check: str, code_version: str, versions: dict[str, int]) -> bytes:
    """The claim "`check` (this code) passed on these table versions", as stored: a blob
    under its own SHA-256, so the claim is found by writing it out again. Like
    `lake.pinned.built_from`, it takes a version number of a lake's table for its content
    (Delta versions only grow; a table dropped and made again starts over, and the lake
    holds no such table)."""
    body = {"check": check, "code_version": code_version, "versions": versions}
    return json.dumps(body, sort_keys=True).encode()


def reusing_pass(
    lake: LakeResource, check: str, code_version: str, reads: Sequence[str], compute: CheckFn
) -> dg.AssetCheckResult:
    """Evaluate a check that reads only the lake tables `reads`, at pinned versions.

    `compute(versions)` must read each table at the version given (None: the table is
    absent). When this check, at this `code_version`, passed before on exactly these
    table versions, the pass is reported again without a row read: the description says
    so and the metadata has `reused: true` and `checked_versions`. Only passes are
    reused; a failing check is evaluated every time.
    """
    versions = {name: lake.version(name) for name in reads}
    if any(version is None for version in versions.values()):
        return with_versions(compute(versions), versions, reused=False)
    claim = claim_bytes(check, code_version, versions)  # type: ignore[arg-type]
    key = object_key(hashlib.sha256(claim).hexdigest())
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
        # the claim only saves the next evaluation: a lake that cannot take it (full,
        # read-only, unreachable) still gets the check's own answer
        with contextlib.suppress(LakeDiskError, LakeUnavailable):
            lake.put_object(claim)
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

"""What a run that finds nothing changed reuses instead of reading: stored rows, passed checks.

A derived table is a function of its inputs' versions and its code; a check is a function
of the table versions it reads and its code. When those are the same as last time, the
answer is too, and reading whole tables again only to find that costs a no-change run
most of its time. An incremental step is a function of the versions of every table it
reads or writes: when they are as an earlier step left them, so is its result. These
records live in the lake beside the data (a table's commit, a claim blob, a step's state
record), so any process on any instance finds them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from lakehouse.graph.pictures import (
    pictures_shown_again,
    previous_metadata,
    without_inline_pictures,
)
from lakehouse.lake import LakeDiskError, LakeResource, LakeUnavailable, table_metadata
from lakehouse.lake.blobs import object_key
from lakehouse.lake.metadata import absolute_uri, commit_info_for
from lakehouse.lake.pinned import commit_built_from
from lakehouse.lake.quarantine import quarantine_digest


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
    version = commit["version"] if "version" in commit else lake.version(name)
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
            **reused_table_metadata(lake, name, version, earlier if same_table else {}),
            "input_versions": dg.MetadataValue.json(versions),
            "reused_version": version,
            **{f"rows_{kind}": 0 for kind in ("inserted", "updated", "deleted")},
        },
    )


# what table_metadata says of a table version that its previous report of it already said
SAME_VERSION_SAME_FACTS = ("dagster/row_count", "dagster/column_schema", "preview")


def reused_table_metadata(
    lake: LakeResource, name: str, version: object, earlier: dict[str, dg.MetadataValue]
) -> dict[str, object]:
    """`table_metadata` of a table at `version`, rows_computed 0: from `earlier` (the
    previous materialization, when it reported this very version: a version's rows, schema
    and preview never change) without opening the table, else read."""
    if not all(fact in earlier for fact in SAME_VERSION_SAME_FACTS):
        return table_metadata(lake, name, lake.row_count(name), 0)
    return {
        "uri": dg.MetadataValue.path(lake.table_uri(name)),
        "dagster/uri": absolute_uri(lake.table_uri(name)),
        "delta_version": version,
        **{fact: earlier[fact] for fact in SAME_VERSION_SAME_FACTS},
        "rows_computed": 0,
    }


CheckFn = Callable[[dict[str, int | None]], dg.AssetCheckResult]


def claim_bytes(check: str, code_version: str, versions: dict[str, int | str]) -> bytes:
    """The claim "`check` (this code) passed on these table versions", as stored: a blob
    under its own SHA-256, so the claim is found by writing it out again. Like
    `lake.pinned.commit_built_from`, it takes a version number of a lake's table for its content
    (Delta versions only grow; a table dropped and made again starts over, and the lake
    holds no such table). A table may be named by a digest of what the check reads of it
    instead (`content:<digest>`, see `reusing_pass`)."""
    body = {"check": check, "code_version": code_version, "versions": versions}
    return json.dumps(body, sort_keys=True).encode()


ContentFn = Callable[[int], str]


def reusing_pass(
    lake: LakeResource,
    check: str,
    code_version: str,
    reads: Sequence[str],
    compute: CheckFn,
    content: Mapping[str, ContentFn] | None = None,
) -> dg.AssetCheckResult:
    """Evaluate a check that reads only the lake tables `reads`, at pinned versions.

    `compute(versions)` must read each table at the version given (None: the table is
    absent). When this check, at this `code_version`, passed before on exactly these
    table versions, the pass is reported again without a row read: the description says
    so and the metadata has `reused: true` and `checked_versions`. Only passes are
    reused; a failing check is evaluated every time.

    `content` names, for some tables, a digest of all that the check reads of them at a
    version (e.g. a few columns of a table whose other columns changed): when no pass is
    recorded for these versions, one on the same digests of those tables and the same
    versions of the others is reused too, the digests read instead of the check's inputs.
    """
    versions = {name: lake.version(name) for name in reads}
    if any(version is None for version in versions.values()):
        return with_versions(compute(versions), versions, reused=False)
    shown = ", ".join(f"{name} v{version}" for name, version in sorted(versions.items()))
    claims = [claim_bytes(check, code_version, versions)]  # type: ignore[arg-type]
    if has_claim(lake, claims[0]):
        return reused_pass(
            f"passed before on these very table versions ({shown}): not evaluated again",
            claims[0],
            versions,
        )
    if content:
        keyed: dict[str, int | str] = {
            name: f"content:{content[name](version)}" if name in content else version  # type: ignore[arg-type]
            for name, version in versions.items()
        }
        claims.append(claim_bytes(check, code_version, keyed))
        if has_claim(lake, claims[1]):
            save_claims(lake, claims[:1])  # the next look at these versions reads nothing
            return reused_pass(
                f"passed before on the same content of {', '.join(sorted(content))} (what "
                f"it reads of it) and the same versions of the rest ({shown}): not evaluated "
                "again",
                claims[1],
                versions,
            )
    result = compute(versions)
    if result.passed:
        save_claims(lake, claims)
    return with_versions(result, versions, reused=False)


def claim_key(claim: bytes) -> str:
    """Where a claim is stored: under its own SHA-256."""
    return object_key(hashlib.sha256(claim).hexdigest())


def has_claim(lake: LakeResource, claim: bytes) -> bool:
    return lake.has_object(claim_key(claim))


def save_claims(lake: LakeResource, claims: list[bytes]) -> None:
    """Store claims of a pass. A claim only saves a later evaluation: a lake that cannot
    take it (full, read-only, unreachable) still gets the check's own answer."""
    with contextlib.suppress(LakeDiskError, LakeUnavailable):
        for claim in claims:
            lake.put_object(claim)


def reused_pass(description: str, claim: bytes, versions: dict) -> dg.AssetCheckResult:
    return with_versions(
        dg.AssetCheckResult(
            passed=True,
            description=description,
            metadata={"claim": claim_key(claim)},
        ),
        versions,
        reused=True,
    )


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


@dataclass(frozen=True)
class StepState:
    """The versions of every table a step reads or writes, as the step found them, with
    what else decides its result (`code_version`: code and config), and a digest of the
    quarantine rows of the sources it reads or writes there (`scopes`).

    An incremental asset's result follows from these: were they the same as when an
    earlier step finished, the step would compute nothing and report what that one
    reported. `reused_state` finds that step's record; `remember_state` leaves one.
    The quarantine table is shared by every producer (each syncs its own source's rows),
    so its rows of these sources stand for it, not its version."""

    asset: str
    code_version: str
    versions: dict[str, int | None]
    scopes: tuple[str, ...] = ()
    quarantined: str = ""

    def key(self) -> str:
        """Where the record of a step that ended in this state is kept in the lake."""
        body = {
            "asset": self.asset,
            "code_version": self.code_version,
            "versions": self.versions,
            "quarantine": {"sources": list(self.scopes), "rows": self.quarantined},
        }
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return f"objects/states/{digest[:2]}/{digest}"

    def now(self, lake: LakeResource) -> StepState:
        """The same step's state as the lake holds it now."""
        return step_state(lake, self.asset, self.code_version, self.versions, self.scopes)


def step_state(
    lake: LakeResource,
    asset: str,
    code_version: str,
    tables: Iterable[str],
    scopes: Sequence[str] = (),
) -> StepState:
    """The state a step starts from (taken before it reads anything): `tables` it reads or
    writes, the quarantine sources (`scopes`) whose rows it reads or syncs."""
    versions = {str(name): lake.version(name) for name in sorted(tables)}
    rows = quarantine_digest(lake, scopes) if scopes else ""
    return StepState(asset, code_version, versions, tuple(sorted(scopes)), rows)


def reused_state(
    context: dg.AssetExecutionContext, lake: LakeResource, state: StepState
) -> dg.MaterializeResult | None:
    """What an earlier step reported when it ended in exactly `state` (same code, same
    config, every table at the same version), reported again: its data version and its
    metadata (`pictures_shown_again`), no row computed or changed, and `reused_state`
    naming the run that computed it. None when no step ended in this state: compute."""
    key = state.key()
    if not lake.has_object(key):
        return None
    record = dg.deserialize_value(lake.get_object(key).decode(), dict)
    metadata = pictures_shown_again(context, lake, record["metadata"])
    if metadata is None:
        return None
    context.log.info(
        f"{state.asset}: every table it reads or writes is as run "
        f"{str(record['run_id'])[:8]} left it ({json.dumps(state.versions, sort_keys=True)}), "
        "with the same code and config: nothing to compute"
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(str(record["data_version"])),
        metadata={
            **metadata,
            **{name: 0 for name in NO_ROWS if name in metadata},
            "rows_computed": 0,
            "reused_state": dg.MetadataValue.dagster_run(str(record["run_id"])),
        },
    )


# what a reused result did not compute or change, whatever the recorded step did
NO_ROWS = ("rows_inserted", "rows_updated", "rows_deleted")


def remember_state(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    state: StepState,
    result: dg.MaterializeResult,
) -> dg.MaterializeResult:
    """Record `result` under the state the step leaves (`state`'s tables as they are now),
    for `reused_state` to find; returns `result`.

    Only when every commit to those tables since `state` was taken is this step's own:
    had another writer moved a table the step read, the result would not follow from the
    versions found now, and nothing is recorded (the next run computes). A lake that
    cannot take the record still gets the step's result. (A quarantine source has one
    producer: its rows are not checked for another writer's.)"""
    if result.data_version is None:
        return result
    ended, ours = state.now(lake), commit_info_for(context)
    for name, version in ended.versions.items():
        earlier = state.versions[name]
        if version == earlier:
            continue
        if version is None:
            return result
        for number in range(-1 if earlier is None else earlier, version):
            commit = lake.commit_info(name, number + 1)
            if any(commit.get(field) != value for field, value in ours.items()):
                return result
    record = {
        "run_id": context.run_id,
        "data_version": result.data_version.value,
        "metadata": without_inline_pictures(storable_metadata(result.metadata or {})),
    }
    with contextlib.suppress(LakeDiskError, LakeUnavailable):
        lake.put_at(ended.key(), dg.serialize_value(record).encode())
    return result


def storable_metadata(metadata: Mapping[str, object]) -> dict[str, dg.MetadataValue]:
    """Materialization metadata as Dagster's metadata values (what plain values become in
    the UI), which Dagster's serializer writes and reads back."""
    typed: dict[str, dg.MetadataValue] = {}
    for name, value in metadata.items():
        if isinstance(value, dg.MetadataValue):
            typed[name] = value
        elif isinstance(value, dg.TableSchema):
            typed[name] = dg.MetadataValue.table_schema(value)
        elif value is None:
            typed[name] = dg.MetadataValue.null()
        elif isinstance(value, bool):
            typed[name] = dg.MetadataValue.bool(value)
        elif isinstance(value, int):
            typed[name] = dg.MetadataValue.int(value)
        elif isinstance(value, float):
            typed[name] = dg.MetadataValue.float(value)
        elif isinstance(value, str):
            typed[name] = dg.MetadataValue.text(value)
        else:
            typed[name] = dg.MetadataValue.json(value)  # type: ignore[arg-type]
    return typed

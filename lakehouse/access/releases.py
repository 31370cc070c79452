"""Named releases of the lake: the Delta version of every table, recorded under a name.

A release is one atomic commit of rows (release, table, version) to the small
Delta table `releases`; reading a table at its release version gives back
exactly the rows it had (`training.load(release=…)`, `query.connect(release=…)`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from lakehouse.lake import LakeResource

RELEASES_TABLE = "releases"
RELEASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
RELEASE_SCHEMA: dict[str, pl.DataType] = {
    "release": pl.String(),
    "created_at": pl.Datetime("us", "UTC"),
    "table_name": pl.String(),
    "table_version": pl.Int64(),
}


class ReleaseError(LookupError):
    """An unknown or duplicate release name, or an empty lake; says which."""


class ReleaseExists(ReleaseError):
    """The name is taken: a release is never overwritten."""


@dataclass(frozen=True)
class Release:
    name: str
    created_at: datetime
    versions: dict[str, int]


def lake_versions(lake: LakeResource) -> dict[str, int]:
    """The current version of every table in the lake (bookkeeping included), but `releases`."""
    versions = {}
    for name in lake.table_names():
        version = lake.version(name)
        if name != RELEASES_TABLE and version is not None:
            versions[name] = version
    return versions


def create_release(
    lake: LakeResource, name: str, *, commit_info: dict[str, str] | None = None
) -> Release:
    """Record the current version of every table as `name`, in one commit; a name is used once."""
    if not RELEASE_NAME.match(name):
        raise ReleaseError(
            f"release name {name!r}: use letters, digits, '.', '_' or '-' (at most 100)"
        )
    versions = lake_versions(lake)
    if not versions:
        raise ReleaseError(f"no tables under {lake.root}: nothing to release")
    now = datetime.now(UTC)
    rows = pl.DataFrame(
        [(name, now, table, version) for table, version in sorted(versions.items())],
        schema=RELEASE_SCHEMA,
        orient="row",
    )
    info = {"release": name, **(commit_info or {"written_by": "lakehouse release create"})}
    if lake.insert_new(RELEASES_TABLE, rows, ["release"], commit_info=info) == 0:
        existing = find_release(lake, name)
        raise ReleaseExists(
            f"release {name!r} already exists (created {existing.created_at.isoformat()}); "
            "pick another name"
        )
    return Release(name, now, versions)


def releases_frame(lake: LakeResource) -> pl.DataFrame:
    return lake.read_or_empty(RELEASES_TABLE, RELEASE_SCHEMA)


def list_releases(lake: LakeResource) -> list[Release]:
    """Every release, oldest first."""
    rows = releases_frame(lake)
    found = []
    for (name,), group in rows.group_by(["release"], maintain_order=True):
        found.append(
            Release(
                str(name),
                group["created_at"].min(),  # type: ignore[arg-type]
                dict(group.select("table_name", "table_version").iter_rows()),
            )
        )
    return sorted(found, key=lambda release: (release.created_at, release.name))


def find_release(lake: LakeResource, name: str) -> Release:
    """The release called `name`, or ReleaseError listing the known names."""
    releases = list_releases(lake)
    for release in releases:
        if release.name == name:
            return release
    known = ", ".join(r.name for r in releases) or "none yet"
    raise ReleaseError(f"no release {name!r} under {lake.root} (releases: {known})")

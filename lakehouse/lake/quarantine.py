"""The quarantine table: every rejected input, with its reason; nothing is dropped silently.

Each producer owns a scope (a source, or one file of a source) and syncs it:
new rejections are inserted with `first_seen`, rejections that no longer occur
(the input was fixed or removed) get `resolved_at`; history is never deleted.
"""

from __future__ import annotations

import json
from datetime import datetime

import polars as pl

from lakehouse.lake.digests import digest_strings
from lakehouse.lake.resource import LakeResource

QUARANTINE_TABLE = "quarantine"
UTC_TS = pl.Datetime("us", "UTC")
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "quarantine_id": pl.String(),
    "source": pl.String(),
    "key": pl.String(),
    "line": pl.Int64(),
    "sha256": pl.String(),
    "reason": pl.String(),
    "detail": pl.String(),
    "first_seen": UTC_TS,
    "resolved_at": UTC_TS,
}
REJECTION_COLUMNS = ("key", "line", "sha256", "reason", "detail")
DETAIL_LIMIT = 2000


def rejection(
    key: str, reason: str, *, sha256: str, line: int | None = None, detail: str = ""
) -> dict[str, object]:
    """One rejected input: what it was, where it came from and why it was refused."""
    return {
        "key": key,
        "line": line,
        "sha256": sha256,
        "reason": reason,
        "detail": detail[:DETAIL_LIMIT],
    }


def rejections_frame(source: str, rows: list[dict[str, object]] | pl.DataFrame) -> pl.DataFrame:
    """Rejections with their stable id: the same bad input always gets the same id."""
    frame = (
        rows
        if isinstance(rows, pl.DataFrame)
        else pl.DataFrame(rows, schema={c: QUARANTINE_SCHEMA[c] for c in REJECTION_COLUMNS})
    )
    ids = [
        digest_strings([source, key, str(line), sha, reason])
        for key, line, sha, reason in frame.select("key", "line", "sha256", "reason").iter_rows()
    ]
    return frame.select(REJECTION_COLUMNS).with_columns(
        quarantine_id=pl.Series(ids, dtype=pl.String), source=pl.lit(source)
    )


def row_detail(row: dict[str, object]) -> str:
    """A rejected database row as JSON text, the way it would be shown to a person."""
    return json.dumps(row, default=str, sort_keys=True)


def active_quarantine(lake: LakeResource, source: str) -> pl.DataFrame:
    """Rejections of `source` that still hold (not resolved)."""
    rows = lake.read_or_empty(
        QUARANTINE_TABLE, QUARANTINE_SCHEMA, filters=[("source", "=", source)]
    )
    return rows.filter(pl.col("resolved_at").is_null())


def sync_quarantine(
    lake: LakeResource,
    source: str,
    rejected: pl.DataFrame,
    *,
    now: datetime,
    commit_info: dict[str, str],
    keys: list[str] | None = None,
) -> dict[str, int]:
    """Make the active quarantine rows of one scope equal to `rejected`.

    The scope is every row of `source`, or only those with one of these `keys`. Returns
    counts of rows added, resolved and active, for logs and metadata.
    """
    filters = [("source", "=", source)] + ([("key", "in", keys)] if keys is not None else [])
    existing = lake.read_or_empty(QUARANTINE_TABLE, QUARANTINE_SCHEMA, filters=filters)
    wanted = rejected.unique("quarantine_id", keep="first", maintain_order=True)
    brand_new = wanted.join(existing, on="quarantine_id", how="anti").with_columns(
        first_seen=pl.lit(now, UTC_TS), resolved_at=pl.lit(None, UTC_TS)
    )
    reopened = existing.filter(
        pl.col("resolved_at").is_not_null()
        & pl.col("quarantine_id").is_in(wanted["quarantine_id"].implode())
    ).with_columns(resolved_at=pl.lit(None, UTC_TS))
    resolved = existing.filter(
        pl.col("resolved_at").is_null()
        & ~pl.col("quarantine_id").is_in(wanted["quarantine_id"].implode())
    ).with_columns(resolved_at=pl.lit(now, UTC_TS))
    changes = pl.concat(
        [frame.select(list(QUARANTINE_SCHEMA)) for frame in (brand_new, reopened, resolved)]
    )
    lake.upsert(QUARANTINE_TABLE, changes, key=["quarantine_id"], commit_info=commit_info)
    return {"added": brand_new.height, "resolved": resolved.height, "active": wanted.height}

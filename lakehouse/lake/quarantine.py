"""The quarantine table: every rejected input, with its reason; nothing is dropped silently.

Each producer owns a scope (a source, or one file of a source) and syncs it:
new rejections are inserted with `first_seen`, rejections that no longer occur
(the input was fixed or removed) get `resolved_at`; history is never deleted.
The rows' shape and ids (pure, no lake) are in `rejections`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import polars as pl

from lakehouse.lake.digests import frame_digest
from lakehouse.lake.rejections import QUARANTINE_SCHEMA, REJECTION_COLUMNS, UTC_TS
from lakehouse.lake.resource import LakeResource

QUARANTINE_TABLE = "quarantine"


def active_quarantine(lake: LakeResource, source: str) -> pl.DataFrame:
    """Rejections of `source` that still hold (not resolved)."""
    rows = lake.read_or_empty(
        QUARANTINE_TABLE, QUARANTINE_SCHEMA, filters=[("source", "=", source)]
    )
    return rows.filter(pl.col("resolved_at").is_null())


def quarantine_digest(lake: LakeResource, sources: Sequence[str]) -> str:
    """A digest of every quarantine row (resolved ones too) of `sources`: what a producer
    of those sources reads and writes there, whatever other producers did meanwhile.
    Whether a row is resolved counts, not when it was seen or resolved: the same
    rejections give the same digest in any lake that holds them."""
    rows = lake.read_or_empty(
        QUARANTINE_TABLE, QUARANTINE_SCHEMA, filters=[("source", "in", list(sources))]
    ).with_columns(resolved=pl.col("resolved_at").is_not_null())
    return frame_digest(
        rows, ["quarantine_id"], [*REJECTION_COLUMNS, "quarantine_id", "source", "resolved"]
    )


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

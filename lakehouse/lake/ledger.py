"""The ingest ledger: what each key of an asset (a log file, a log day) was last built from.

Assets that work file by file or day by day record here the content digest each
key was built from, in the same run as the rows; a key whose digest is unchanged
is skipped, so a rerun reads and parses nothing.
"""

from __future__ import annotations

import polars as pl

from lakehouse.lake.resource import LakeResource

LEDGER_TABLE = "_ingested_files"
LEDGER_SCHEMA: dict[str, pl.DataType] = {
    "asset": pl.String(),
    "key": pl.String(),
    "sha256": pl.String(),
    "lines": pl.Int64(),
    "accepted": pl.Int64(),
    "rejected": pl.Int64(),
}
# days read and committed together: bounds memory (8 of 60 days of 10M events: 1.75 GB)
DAYS_PER_COMMIT = 8


def ledger_digests(lake: LakeResource, asset: str) -> dict[str, str]:
    """What each key of `asset` was last built from (a content digest), from the lake's ledger."""
    ledger = lake.read_or_empty(LEDGER_TABLE, LEDGER_SCHEMA, filters=[("asset", "=", asset)])
    return dict(ledger.select("key", "sha256").iter_rows())

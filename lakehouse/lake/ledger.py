"""The ingest ledger: what each key of an asset (a log file, a log day) was last built from.

Assets that work file by file or day by day record here the content digest each
key was built from, in the same run as the rows; a key whose digest is unchanged
is skipped, so a rerun reads and parses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import polars as pl

from lakehouse.lake.resource import LakeResource
from lakehouse.lake.tables import INGESTED_FILES

LEDGER_TABLE = INGESTED_FILES
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


@dataclass(frozen=True)
class DayBatch:
    """What rebuilding some days produced: the partitions' rows, per day how many inputs
    were read, accepted and rejected (the ledger's counts), and the commits that go with
    the rows before the ledger names these days done (quarantine)."""

    rows: pl.DataFrame
    counts: Mapping[str, tuple[int, int, int]]
    with_rows: Callable[[], object] | None = None


@dataclass(frozen=True)
class Rebuilt:
    days: list[str]  # the days rebuilt (their digest differed from the ledger's)
    rows: int  # rows written to their partitions


def changed_days(
    lake: LakeResource,
    asset: str,
    digests: Mapping[str, str],
    ledger_key: Callable[[str], str] = str,
) -> list[str]:
    """The days whose input digest differs from the one `asset`'s ledger recorded."""
    done = ledger_digests(lake, asset)
    return [day for day, digest in digests.items() if done.get(ledger_key(day), "") != digest]


def rebuild_changed_days(
    lake: LakeResource,
    asset: str,
    table: str,
    digests: Mapping[str, str],
    build: Callable[[list[str]], DayBatch],
    *,
    commit_info: dict[str, str],
    ledger_key: Callable[[str], str] = str,
    per_commit: int = DAYS_PER_COMMIT,
) -> Rebuilt:
    """Rebuild the partitions of `table` whose input digest (`digests`: day -> digest)
    differs from the one `asset`'s ledger recorded, `per_commit` days at a time.

    Each chunk commits its partitions (replace_partitions), then `with_rows`, then its
    ledger rows: each commit is atomic and idempotent, so a crash between them is
    repaired by the next run, which finds the ledger behind and redoes the chunk. A table
    with monthly files then has the small files of the months it touched merged.
    """
    changed = changed_days(lake, asset, digests, ledger_key)
    written = 0
    for start in range(0, len(changed), per_commit):
        chunk = changed[start : start + per_commit]
        batch = build(chunk)
        lake.replace_partitions(table, batch.rows, values=chunk, commit_info=commit_info)
        if batch.with_rows is not None:
            batch.with_rows()
        ledger = pl.DataFrame(
            [
                (asset, ledger_key(day), digests[day], *batch.counts.get(day, (0, 0, 0)))
                for day in chunk
            ],
            schema=LEDGER_SCHEMA,
            orient="row",
        )
        lake.upsert(LEDGER_TABLE, ledger, commit_info=commit_info)
        written += batch.rows.height
    if changed:
        lake.compact_months(table, changed, commit_info=commit_info)
    return Rebuilt(changed, written)

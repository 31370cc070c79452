"""Row-level incremental tables: compute only the rows a table lacks, drop the ones not wanted.

An asset says which keys it wants (with whatever the computation needs); the table
is compared with them by its natural key (lakehouse.lake.tables): keys it holds but
no longer wants are deleted in one commit, the missing ones are computed in batches
and each batch is upserted as it comes, so a crash loses one batch at most and the
rerun picks up where it stopped. Plain functions over LakeResource and polars.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import polars as pl

from lakehouse.lake.resource import LakeResource
from lakehouse.lake.tables import key_of


@dataclass(frozen=True)
class Plan:
    """What a run of an incremental table has to do."""

    table: str
    key: list[str]
    wanted: pl.DataFrame  # every row the table should hold: its key and the inputs
    missing: pl.DataFrame  # wanted rows the table lacks (to compute)
    stale: pl.DataFrame  # keys the table holds that are not wanted (to delete)

    def apply(
        self,
        lake: LakeResource,
        compute: Callable[[pl.DataFrame], Iterable[pl.DataFrame]],
        *,
        commit_info: dict[str, str],
    ) -> Iterator[pl.DataFrame]:
        """Delete the stale keys, then upsert each batch `compute(missing)` yields and hand
        it back for reporting; `compute` is not called when nothing is missing."""
        lake.delete_keys(self.table, self.stale, commit_info=commit_info)
        if self.missing.is_empty():
            return
        for rows in compute(self.missing):
            lake.upsert(self.table, rows, self.key, commit_info=commit_info)
            yield rows


def plan(
    lake: LakeResource, table: str, wanted: pl.DataFrame, key: Sequence[str] | None = None
) -> Plan:
    """Compare `wanted` (which holds the table's key columns) with the keys `table` holds.

    Only the key columns are read: the computed columns may be most of the table's bytes.
    """
    key = key_of(table, key)
    have = lake.read_or_empty(table, {column: wanted.schema[column] for column in key}, columns=key)
    return Plan(
        table=table,
        key=key,
        wanted=wanted,
        missing=wanted.join(have, on=key, how="anti"),
        stale=have.join(wanted.select(key), on=key, how="anti"),
    )

"""Rejections in quarantine shape: pure helpers (no Delta, no Dagster), so parsers and
validators can say what they refused without loading the lake."""

from __future__ import annotations

import json

import polars as pl

from lakehouse.lake.digests import digest_strings

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

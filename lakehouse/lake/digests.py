"""Content digests: the DataVersions that drive staleness come from here only."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import polars as pl


def digest_strings(parts: Iterable[str]) -> str:
    """SHA-256 over an ordered sequence of strings (each one length-prefixed)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def frame_digest(frame: pl.DataFrame, key: Sequence[str], columns: Sequence[str]) -> str:
    """Order-independent digest of `columns` of a frame, stable across polars versions.

    Rows are sorted by `key` and written as CSV, so the digest depends on values
    only, never on chunking, file layout or the time a row was written.
    """
    if frame.is_empty():
        return digest_strings(["empty", *columns])
    ordered = frame.select(columns).sort(list(key))
    return hashlib.sha256(ordered.write_csv().encode()).hexdigest()

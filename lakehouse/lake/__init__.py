"""The lake library: Delta tables under one root, and what every table write promises.

The public names are imported from here (`from lakehouse.lake import LakeResource`).
They load on first use, so the pure modules of this package (tables, digests,
rejections) stay importable without deltalake or Dagster.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lakehouse.lake.faults import LakeDiskError, LakeUnavailable
    from lakehouse.lake.merge import SchemaConflict
    from lakehouse.lake.metadata import commit_info_for, table_metadata
    from lakehouse.lake.resource import LakeResource

_HOMES = {
    "LakeResource": "lakehouse.lake.resource",
    "commit_info_for": "lakehouse.lake.metadata",
    "table_metadata": "lakehouse.lake.metadata",
    "LakeDiskError": "lakehouse.lake.faults",
    "LakeUnavailable": "lakehouse.lake.faults",
    "SchemaConflict": "lakehouse.lake.merge",
}

__all__ = [
    "LakeDiskError",
    "LakeResource",
    "LakeUnavailable",
    "SchemaConflict",
    "commit_info_for",
    "table_metadata",
]


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)

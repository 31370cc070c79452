"""Dagster resources for what we read: the source object store and the metadata database.

The resources load on first use, so importing one module of this package (the
errors, the key checks) does not load SQLAlchemy or boto3.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lakehouse.resources.metadata_db import MetadataDbResource
    from lakehouse.resources.object_store import ObjectInfo, ObjectStoreResource

_HOMES = {
    "MetadataDbResource": "lakehouse.resources.metadata_db",
    "ObjectInfo": "lakehouse.resources.object_store",
    "ObjectStoreResource": "lakehouse.resources.object_store",
}

__all__ = ["MetadataDbResource", "ObjectInfo", "ObjectStoreResource"]


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)

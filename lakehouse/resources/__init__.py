"""Dagster resources for what we read: the source object store and the metadata database."""

from lakehouse.resources.metadata_db import MetadataDbResource
from lakehouse.resources.object_store import ObjectInfo, ObjectStoreResource

__all__ = ["MetadataDbResource", "ObjectInfo", "ObjectStoreResource"]

"""Dagster resources: the lake, the source object store, the metadata database."""

from lakehouse.resources.lake import LakeResource
from lakehouse.resources.metadata_db import MetadataDbResource
from lakehouse.resources.object_store import ObjectInfo, ObjectStoreResource

__all__ = ["LakeResource", "MetadataDbResource", "ObjectInfo", "ObjectStoreResource"]

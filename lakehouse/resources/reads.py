"""Reading one object's bytes by key, without Dagster: what spawned loader workers need.

`ObjectStoreResource.read` is this function; the augmentation workers call it
directly, so a worker process does not import Dagster to read a photo.
"""

from __future__ import annotations

from lakehouse.resources.keys import read_below
from lakehouse.resources.s3 import s3_client
from lakehouse.settings import is_s3, parse_s3


def s3_object_key(uri: str, key: str) -> str:
    """The S3 key of `key` below the store `s3://bucket/prefix`."""
    prefix = parse_s3(uri).prefix
    return f"{prefix}/{key}" if prefix else key


def read_object(uri: str, key: str) -> bytes:
    """All bytes of object `key` in the store at `uri` (a directory or an S3 prefix); a key
    reaching outside the store is refused."""
    if is_s3(uri):
        response = s3_client().get_object(Bucket=parse_s3(uri).bucket, Key=s3_object_key(uri, key))
        return response["Body"].read()
    return read_below(uri, key)

"""One object's bytes by key, from a local directory or S3, without Dagster.

Kept apart from the Dagster resources so that DataLoader workers, which are
spawned and import whatever they unpickle, start without importing Dagster.
"""

from __future__ import annotations

import os

from lakehouse.settings import is_s3, parse_s3


def s3_client():
    import boto3

    return boto3.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


def s3_key(uri: str, key: str) -> str:
    """The full S3 key of `key` under the `s3://bucket/prefix` of `uri`."""
    prefix = parse_s3(uri).prefix
    return f"{prefix}/{key}" if prefix else key


def read_object(uri: str, key: str) -> bytes:
    if is_s3(uri):
        body = s3_client().get_object(Bucket=parse_s3(uri).bucket, Key=s3_key(uri, key))["Body"]
        return body.read()
    with open(os.path.join(uri, key), "rb") as handle:
        return handle.read()

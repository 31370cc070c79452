"""One S3 client per endpoint and identity, built by dagster-aws from the standard AWS variables."""

from __future__ import annotations

import functools
import os


def s3_client():
    """A boto3 S3 client for the current `AWS_*` environment (secrets never leave it)."""
    return _client_for(
        os.environ.get("AWS_ENDPOINT_URL") or None, os.environ.get("AWS_ACCESS_KEY_ID")
    )


@functools.lru_cache(maxsize=8)
def _client_for(endpoint: str | None, key_id: str | None):
    """Clients are slow to build and thread-safe: keep one per (endpoint, key id)."""
    from dagster_aws.s3 import S3Resource

    return S3Resource(endpoint_url=endpoint).get_client()

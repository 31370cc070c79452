"""A throwaway S3-compatible server (moto) on loopback, with the AWS settings that reach it."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lakehouse_tests.servers.need import need
from lakehouse_tests.servers.postgres import free_port

MOTO_SERVER = Path(sys.executable).parent / "moto_server"


def aws_settings(endpoint: str) -> dict[str, str]:
    """The environment a client needs for `endpoint` (moto accepts any credentials)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }


def start_moto(port: int) -> subprocess.Popen:
    """Start `moto_server` on `port`; the caller stops it (it can be restarted on the same port)."""
    if not MOTO_SERVER.is_file():
        need(
            f"moto_server not found at {MOTO_SERVER}", "pip install -e '.[dev]' (`make test` does)"
        )
    return subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def create_buckets(endpoint: str, buckets: tuple[str, ...]) -> None:
    """Create `buckets`, waiting for the server to accept connections."""
    import boto3

    settings = aws_settings(endpoint)
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
        region_name=settings["AWS_REGION"],
    )
    deadline = time.monotonic() + 20
    for bucket in buckets:
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@contextmanager
def s3_server(buckets: tuple[str, ...] = ("lake-bucket",)) -> Iterator[str]:
    """Start moto with `buckets` created; yield its endpoint URL."""
    port = free_port()
    server = start_moto(port)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        create_buckets(endpoint, buckets)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def fresh_bucket(endpoint: str) -> str:
    """A new, empty bucket on the server at `endpoint` (one per test on a shared server)."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    create_buckets(endpoint, (name,))
    return name

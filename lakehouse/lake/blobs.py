"""The blob store beside the tables: content-addressed bytes (model weights) under the
lake root, stored whole or not at all."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from lakehouse.failpoints import failpoint
from lakehouse.resources.keys import checked_key, local_path, read_below
from lakehouse.resources.s3 import s3_client
from lakehouse.settings import is_s3, parse_s3


def object_key(sha256: str) -> str:
    """Where content-addressed bytes live: objects/sha256/ab/abcdef…"""
    return f"objects/sha256/{sha256[:2]}/{sha256}"


def put_object(root: str, data: bytes) -> str:
    """Store bytes below `root` under their SHA-256 (idempotent: same bytes, same key);
    returns the key."""
    key = object_key(hashlib.sha256(data).hexdigest())
    put_at(root, key, data)
    return key


def put_at(root: str, key: str, data: bytes) -> None:
    """Store bytes below `root` under `key`, whole or not at all. Write-once: a key names
    one content (a digest of it, or of what decides it), so a key already there is kept."""
    if is_s3(root):
        location = parse_s3(root)
        target = f"{location.prefix}/{checked_key(root, key)}".lstrip("/")
        s3_client().put_object(Bucket=location.bucket, Key=target, Body=data)
    else:
        store_atomically(local_path(root, key), data)


def get_object(root: str, key: str) -> bytes:
    """Bytes stored by put_object; a key reaching outside the root is refused."""
    if is_s3(root):
        location = parse_s3(root)
        target = f"{location.prefix}/{checked_key(root, key)}".lstrip("/")
        return s3_client().get_object(Bucket=location.bucket, Key=target)["Body"].read()
    return read_below(root, key)


def has_object(root: str, key: str) -> bool:
    """Whether `key` is stored (a missing object is an answer, not an error); on S3 a HEAD
    request, so that asking never downloads it."""
    if is_s3(root):
        location = parse_s3(root)
        target = f"{location.prefix}/{checked_key(root, key)}".lstrip("/")
        try:
            s3_client().head_object(Bucket=location.bucket, Key=target)
        except Exception as exc:  # botocore's ClientError, without importing botocore here
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                return False
            raise
        return True
    return local_path(root, key).is_file()


def store_atomically(path: Path, data: bytes) -> None:
    """Write `path` via a temporary name and a rename: a crash or a full disk never
    leaves a half-written object under the final name (nor, on errors, the temporary)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".partial-{uuid.uuid4().hex}")
    try:
        partial.write_bytes(data)
        failpoint("object/partial")
        partial.replace(path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise


def blob_uri(root: str, key: str) -> str:
    """Absolute URI of a stored object: `s3://…` on S3, `file:///…` on a local disk."""
    if is_s3(root):
        return f"{root.rstrip('/')}/{key}"
    return local_path(root, key).resolve().as_uri()

"""Keys below a root (the lake, the source store): they never reach outside it.

Keys come from listings, tables and users; a key made of `..` segments, an
absolute path or a symlink must not turn a read or a write of "something in the
lake" into one of any file on the machine.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

FD_PATHS = Path("/proc/self/fd")


class UnsafeKeyError(ValueError):
    """A key that would reach outside its root."""


def checked_key(root: str, key: str) -> str:
    """`key` itself if it names something below `root`: relative, no `..` segment, no NUL."""
    if not key or key.startswith("/") or "\x00" in key or ".." in key.split("/"):
        raise UnsafeKeyError(f"key {key!r} would reach outside {root!r}: refused")
    return key


def local_path(root: str, key: str) -> Path:
    """The file that `key` names below the directory `root`, symlinks resolved, never outside."""
    base = Path(root).resolve()
    path = (base / checked_key(root, key)).resolve()
    if not path.is_relative_to(base) or path == base:
        raise UnsafeKeyError(f"key {key!r} resolves to {str(path)!r}, outside {root!r}: refused")
    return path


@functools.lru_cache(maxsize=64)
def resolved_root(root: str) -> str:
    """`root` with symlinks resolved, once per root: readers check many keys against it."""
    return os.path.realpath(root)


def opened_path(descriptor: int, fallback: str) -> str:
    """The real path of an open file, from the kernel where it says (no race with a rename);
    else `fallback` resolved."""
    try:
        return os.readlink(FD_PATHS / str(descriptor))
    except OSError:
        return os.path.realpath(fallback)


def open_below(root: str, key: str) -> int:
    """A read-only descriptor of the file `key` names below the directory `root`.

    The check is made on the file actually opened, so it costs one syscall
    instead of a lstat per path component and a symlink swapped in between
    check and open cannot send the read elsewhere.
    """
    base = resolved_root(root)
    candidate = os.path.join(base, checked_key(root, key))
    descriptor = os.open(candidate, os.O_RDONLY)
    real = opened_path(descriptor, candidate)
    if not real.startswith(base.rstrip("/") + "/"):
        os.close(descriptor)
        raise UnsafeKeyError(f"key {key!r} resolves to {real!r}, outside {root!r}: refused")
    return descriptor


def read_below(root: str, key: str) -> bytes:
    """All bytes of the file `key` names below `root` (see `open_below`)."""
    with os.fdopen(open_below(root, key), "rb") as file:
        return file.read()

"""Keys below a root (the lake, the source store): they never reach outside it.

Keys come from listings, tables and users; a key made of `..` segments, an
absolute path or a symlink must not turn a read or a write of "something in the
lake" into one of any file on the machine.
"""

from __future__ import annotations

from pathlib import Path


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

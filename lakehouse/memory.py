"""Give freed memory back to the system after a step that held many pixels.

A step that read and decoded hundreds of megabytes leaves them free but still resident:
Arrow's allocator (mimalloc) keeps its pages, glibc keeps freed heap pages in its
arenas, and reference cycles (frames of a read) wait for the cycle collector. The
process then enters the next step with that much more resident, and the run's peak is
the sum. Releasing costs a few milliseconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import sys

import pyarrow as pa


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    """glibc's malloc_trim, or None on a C library without it (macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    return getattr(ctypes.CDLL(name), "malloc_trim", None)


def release_freed_memory() -> None:
    """Collect cycles, then hand Arrow's unused pages and glibc's free heap pages back."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)

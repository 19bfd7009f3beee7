"""Returning freed memory to the operating system (glibc), so peak RSS tracks the live working set."""

from __future__ import annotations

from collections.abc import Callable


def heap_trimmer() -> Callable[[], None]:
    """glibc's ``malloc_trim(0)``, or a no-op elsewhere.

    Buffers allocated on one thread and freed on another (store blocks, batches of varying shapes) leave
    freed pages in glibc's per-thread arenas, and RSS creeps up block after block (measured: +170 MB over
    51 analysis blocks of 16 MB; extraction grew from 1.5 GB on 2,000 sentences to 2.6 GB on 20,000).
    Trimming after each block or batch costs about a millisecond.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)

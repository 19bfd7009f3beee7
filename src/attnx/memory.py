"""Returning freed memory to the operating system (glibc), so peak RSS tracks the live working set."""

from __future__ import annotations

import functools
from collections.abc import Callable


def heap_trimmer(every_bytes: int = 0) -> Callable[..., None]:
    """glibc's ``malloc_trim(0)``, or a no-op elsewhere; ``trim(nbytes=0)`` trims once at least ``every_bytes``
    have been handed to it since the last trim (0: on every call).

    Buffers allocated on one thread and freed on another (store blocks, batches of varying shapes) leave
    freed pages in glibc's per-thread arenas, and RSS creeps up block after block (measured: +170 MB over
    51 analysis blocks of 16 MB; extraction grew from 1.5 GB on 2,000 sentences to 2.6 GB on 20,000).
    A trim itself costs about a millisecond, but the pages it returns are faulted in and zeroed again by the
    next block: analysis trims every few hundred MB, not every block (measured: trimming every 64 MB block
    made ``analyze`` spend 2.8 instead of 2.1 core-seconds per GB of float16 attention).
    """
    import ctypes

    malloc_trim = getattr(_libc(), "malloc_trim", None)
    if malloc_trim is None:
        return lambda nbytes=0: None
    malloc_trim.argtypes = [ctypes.c_size_t]
    pending = [0]

    def trim(nbytes: int = 0) -> None:
        pending[0] += nbytes
        if pending[0] >= every_bytes:
            malloc_trim(0)
            pending[0] = 0

    return trim


_KEPT = [False]


def keep_freed_heap_pages() -> bool:
    """Make glibc keep freed memory for reuse instead of unmapping it (fixed ``M_MMAP_THRESHOLD`` of 32 MiB, the
    most glibc's own adaptive threshold reaches, and a 1 GiB ``M_TRIM_THRESHOLD``); once per process, a no-op
    elsewhere. Returns whether the settings are in force.

    Reading a store allocates a fresh buffer per chunk object (Icechunk's read, then Python's copy of it, 8 MB
    each): unmapped on free, every page of every chunk was faulted in again, which cost the reader more than
    decoding (EWT's 1.1 GB float16 store: 240k minor faults and 1.0 core-s per GB to fetch alone, 4k and 0.35
    with these settings; 2-core EPYC, loaded). Peak RSS still tracks the working set: freed pages are reused,
    and :func:`heap_trimmer` still returns them to the system when asked.
    """
    if _KEPT[0]:
        return True
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    _KEPT[0] = bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))
    return _KEPT[0]


def heap_in_use() -> dict[str, int] | None:
    """glibc's heap counters (``mallinfo2``), in bytes: ``live`` (in-use arena bytes plus mmapped blocks: what
    the process holds, whatever glibc does with freed pages), ``arena`` and ``free_in_arena``; None elsewhere.
    Cheap enough to call after every batch (the library is looked up once)."""
    mallinfo2 = _mallinfo2()
    if mallinfo2 is None:
        return None
    info = mallinfo2()
    return {"live": info.uordblks + info.hblkhd, "arena": info.arena, "free_in_arena": info.fordblks}


@functools.cache
def _mallinfo2():  # noqa: ANN202 - the ctypes function, or None (not glibc, or glibc before 2.33)
    import ctypes

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (k, ctypes.c_size_t)
            for k in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    mallinfo2 = getattr(_libc(), "mallinfo2", None)
    if mallinfo2 is not None:
        mallinfo2.restype = MallInfo2
    return mallinfo2


@functools.cache
def _libc():  # noqa: ANN202 - ctypes.CDLL | None
    """The C library (glibc's functions are looked up on it), or None where it cannot be loaded; looked up once
    per process (``find_library`` runs ``ldconfig``: 1-2 ms, and both the command and the engine loop ask)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None

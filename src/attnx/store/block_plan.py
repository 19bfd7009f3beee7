"""How a store is streamed in blocks: the plan (which contiguous records form each block, a pure function of the
record table, computed before any read) and the pool of buffers blocks are decoded into when they are reused."""

from __future__ import annotations

import threading

import numpy as np


def plan_blocks(starts: np.ndarray, ends: np.ndarray, positions: np.ndarray, max_elems: int) -> list[tuple[int, int]]:
    """Physical ranges ``[p0, p1)`` of at most ``max_elems`` payload elements each (a record larger than that is
    a block of its own). ``starts``, ``ends``: (N,) payload element range of each record (physical order);
    ``positions``: the sorted physical positions to cover (a block never spans a gap between them)."""
    plan: list[tuple[int, int]] = []
    k = 0
    n = len(positions)
    while k < n:
        p0 = positions[k]
        limit = starts[p0] + max_elems
        j = k + 1
        while j < n and positions[j] == positions[j - 1] + 1 and ends[positions[j]] <= limit:
            j += 1
        plan.append((int(p0), int(positions[j - 1]) + 1))
        k = j
    return plan


class BlockBuffers:
    """Free block buffers for :meth:`AttentionStore.blocks` ``(reuse=True)``: ``take`` never waits (it
    allocates when none is free), ``give`` keeps at most ``keep`` for later; thread-safe."""

    def __init__(self, dtype: np.dtype, elems: int, keep: int) -> None:
        self.dtype, self.elems, self.keep = dtype, elems, keep
        self.free: list[np.ndarray] = []
        self.lock = threading.Lock()

    def take(self) -> np.ndarray:
        with self.lock:
            if self.free:
                return self.free.pop()
        return np.empty(self.elems, self.dtype)

    def give(self, buf: np.ndarray) -> None:
        with self.lock:
            if len(self.free) < self.keep:
                self.free.append(buf)
